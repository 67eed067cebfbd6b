package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/shared/config"
)

func deleteEnv(over map[string]string) config.Env {
	m := map[string]string{
		"DATABASE_URL":              "postgres://u@127.0.0.1:5432/db",
		"REDIS_URL":                 "redis://127.0.0.1:6379/0",
		"SANDBOX_CLEANUP_QUEUE_URL": "http://127.0.0.1:4566/000000000000/q",
		"SUPABASE_JWT_SECRET":       "secret",
	}
	for k, v := range over {
		if v == "<unset>" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return config.Map(m)
}

func TestLoadDeleteThreadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		over    map[string]string
		wantVar string
	}{
		{map[string]string{"DATABASE_URL": "<unset>"}, "DATABASE_URL"},
		{map[string]string{"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL"},
		{map[string]string{"REDIS_URL": "<unset>"}, "REDIS_URL"},
		{map[string]string{"REDIS_URL": "http://x"}, "REDIS_URL"},
		{map[string]string{"REDIS_CLUSTER": "maybe"}, "REDIS_CLUSTER"},
		{map[string]string{"SANDBOX_CLEANUP_QUEUE_URL": "<unset>"}, "SANDBOX_CLEANUP_QUEUE_URL"},
		{map[string]string{"SANDBOX_CLEANUP_QUEUE_URL": "not a url"}, "SANDBOX_CLEANUP_QUEUE_URL"},
		{map[string]string{"SUPABASE_JWT_SECRET": "<unset>"}, "SUPABASE_JWT_SECRET"},
		{map[string]string{"SUPABASE_JWKS_URL": "ftp://x/jwks"}, "SUPABASE_JWKS_URL"},
		{map[string]string{"DB_PORT": "http"}, "DB_PORT"},
		{map[string]string{"DB_IAM_AUTH": "yes please"}, "DB_IAM_AUTH"},
		{map[string]string{"DB_IAM_AUTH": "true", "DB_HOST": "h", "DB_NAME": "n", "AWS_REGION": "eu-west-1"}, "DB_USER"},
		{map[string]string{"DATABASE_URL": "<unset>", "DB_SECRET_ARN": "secret-name"}, "DB_SECRET_ARN"},
		{map[string]string{"SUPABASE_URL": "abc.supabase.co"}, "SUPABASE_URL"},
		// SUPABASE_URL also names the issuer, so it is checked even when
		// the JWKS URL is given.
		{map[string]string{"SUPABASE_URL": "ftp://abc.supabase.co", "SUPABASE_JWKS_URL": "https://x/jwks"}, "SUPABASE_URL"},
		{map[string]string{"JWT_REQUIRE_SESSION": "yes"}, "JWT_REQUIRE_SESSION"},
	}
	for _, tc := range tests {
		_, err := config.LoadDeleteThread(deleteEnv(tc.over))
		if err == nil {
			t.Errorf("%v: accepted", tc.over)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.wantVar) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q does not name %s on one line", tc.over, msg, tc.wantVar)
		}
	}
}

func TestLoadDeleteThreadDefaults(t *testing.T) {
	c, err := config.LoadDeleteThread(deleteEnv(map[string]string{"SUPABASE_URL": "https://abc.supabase.co/"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audience != "authenticated" || c.JWKSURL != "https://abc.supabase.co/auth/v1/.well-known/jwks.json" || c.DB.Port != 5432 {
		t.Fatalf("%+v", c)
	}
	c, err = config.LoadDeleteThread(deleteEnv(map[string]string{"JWT_AUDIENCE": "", "SUPABASE_JWT_SECRET": "<unset>", "SUPABASE_JWKS_URL": "https://x/jwks"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audience != "" {
		t.Fatalf("empty JWT_AUDIENCE must disable the check, got %q", c.Audience)
	}
	c, err = config.LoadDeleteThread(deleteEnv(map[string]string{"DATABASE_URL": "<unset>", "DB_IAM_AUTH": "true", "DB_HOST": "h", "DB_NAME": "n", "DB_USER": "u", "AWS_REGION": "eu-west-1", "DB_PORT": "6432"}))
	if err != nil || !c.DB.IAMAuth || c.DB.Port != 6432 {
		t.Fatalf("%+v %v", c.DB, err)
	}
}

func TestLoadCleanup(t *testing.T) {
	base := map[string]string{
		"DATABASE_URL":              "postgres://u@127.0.0.1/db",
		"REDIS_URL":                 "rediss://cache:6379",
		"DAYTONA_SERVER_URL":        "https://app.daytona.io/api/",
		"DAYTONA_API_KEY":           "k",
		"SANDBOX_CLEANUP_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
	}
	c, err := config.LoadCleanup(config.Map(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.ResendAfter != 5*time.Minute || c.DaytonaURL != "https://app.daytona.io/api" {
		t.Fatalf("%+v", c)
	}
	for name, bad := range map[string]string{"OUTBOX_RESEND_AFTER": "5 minutes", "DAYTONA_API_KEY": "", "DAYTONA_SERVER_URL": "app.daytona.io"} {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		m[name] = bad
		if _, err := config.LoadCleanup(config.Map(m)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: err %v", name, bad, err)
		}
	}
}

func TestLoadDeleteThreadIssuer(t *testing.T) {
	tests := []struct {
		name string
		over map[string]string
		want string
	}{
		{"derived from SUPABASE_URL", map[string]string{"SUPABASE_URL": "https://abc.supabase.co"}, "https://abc.supabase.co/auth/v1"},
		{"trailing slash trimmed", map[string]string{"SUPABASE_URL": "https://abc.supabase.co/"}, "https://abc.supabase.co/auth/v1"},
		{"derived with an explicit JWKS URL", map[string]string{"SUPABASE_URL": "https://abc.supabase.co", "SUPABASE_JWKS_URL": "https://keys.example/jwks"}, "https://abc.supabase.co/auth/v1"},
		{"JWT_ISSUER wins", map[string]string{"SUPABASE_URL": "https://abc.supabase.co", "JWT_ISSUER": "https://auth.example.com/auth/v1"}, "https://auth.example.com/auth/v1"},
		{"empty JWT_ISSUER disables the check", map[string]string{"SUPABASE_URL": "https://abc.supabase.co", "JWT_ISSUER": ""}, ""},
		{"JWT_ISSUER without SUPABASE_URL", map[string]string{"JWT_ISSUER": "https://auth.example.com/auth/v1"}, "https://auth.example.com/auth/v1"},
		{"neither: unchecked", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.LoadDeleteThread(deleteEnv(tt.over))
			if err != nil {
				t.Fatal(err)
			}
			if c.Issuer != tt.want {
				t.Fatalf("Issuer = %q, want %q", c.Issuer, tt.want)
			}
		})
	}
}

func TestLoadDeleteThreadRequireSession(t *testing.T) {
	for value, want := range map[string]bool{"<unset>": false, "": false, "false": false, "true": true, "TRUE": true, "1": true, "0": false} {
		c, err := config.LoadDeleteThread(deleteEnv(map[string]string{"JWT_REQUIRE_SESSION": value}))
		if err != nil {
			t.Fatalf("JWT_REQUIRE_SESSION=%q: %v", value, err)
		}
		if c.RequireSession != want {
			t.Errorf("JWT_REQUIRE_SESSION=%q: RequireSession = %v, want %v", value, c.RequireSession, want)
		}
	}
}

func TestOperationalSettings(t *testing.T) {
	cleanupBase := map[string]string{
		"DATABASE_URL":              "postgres://u@127.0.0.1/db",
		"REDIS_URL":                 "redis://cache:6379",
		"DAYTONA_SERVER_URL":        "https://app.daytona.io/api",
		"DAYTONA_API_KEY":           "k",
		"SANDBOX_CLEANUP_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/1/q",
	}
	with := func(over map[string]string) config.Env {
		m := map[string]string{}
		for k, v := range cleanupBase {
			m[k] = v
		}
		for k, v := range over {
			m[k] = v
		}
		return config.Map(m)
	}
	c, err := config.LoadCleanup(with(nil))
	if err != nil || c.Retention != 7*24*time.Hour || c.MetricsNamespace != "ThreadDelete" {
		t.Fatalf("defaults: retention %v, namespace %q, %v", c.Retention, c.MetricsNamespace, err)
	}
	c, err = config.LoadCleanup(with(map[string]string{"OUTBOX_RETENTION": "36h", "METRICS_NAMESPACE": "ThreadDelete/prod-stack"}))
	if err != nil || c.Retention != 36*time.Hour || c.MetricsNamespace != "ThreadDelete/prod-stack" {
		t.Fatalf("set: retention %v, namespace %q, %v", c.Retention, c.MetricsNamespace, err)
	}
	d, err := config.LoadDeleteThread(deleteEnv(map[string]string{"METRICS_NAMESPACE": "Kortix/Thread Delete#2"}))
	if err != nil || d.MetricsNamespace != "Kortix/Thread Delete#2" {
		t.Fatalf("delete-thread namespace %q, %v", d.MetricsNamespace, err)
	}
	if d, _ := config.LoadDeleteThread(deleteEnv(nil)); d.MetricsNamespace != "ThreadDelete" {
		t.Fatalf("delete-thread default namespace %q", d.MetricsNamespace)
	}
	for _, tc := range []struct{ name, value string }{
		{"OUTBOX_RETENTION", "7d"}, {"OUTBOX_RETENTION", "0s"}, {"OUTBOX_RETENTION", "-1h"},
		{"METRICS_NAMESPACE", ""}, {"METRICS_NAMESPACE", "AWS/Lambda"}, {"METRICS_NAMESPACE", "ns\nx"},
		{"METRICS_NAMESPACE", "é"}, {"METRICS_NAMESPACE", strings.Repeat("n", 256)},
	} {
		_, err := config.LoadCleanup(with(map[string]string{tc.name: tc.value}))
		if err == nil || !strings.Contains(err.Error(), tc.name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s=%q: err %v, want one line naming %s", tc.name, tc.value, err, tc.name)
		}
		if tc.name == "METRICS_NAMESPACE" {
			if _, err := config.LoadDeleteThread(deleteEnv(map[string]string{tc.name: tc.value})); err == nil {
				t.Errorf("delete-thread accepted %s=%q", tc.name, tc.value)
			}
		}
	}
}
