// Package config reads the functions' settings from the environment into
// typed values. A missing or malformed setting is one error line naming the
// variable, so that a bad deploy fails at init with a clear message. Nothing
// here does I/O.
package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Env looks a variable up: os.LookupEnv, or a map in tests. It must tell an
// empty value from an absent one (JWT_AUDIENCE="" disables the check).
type Env func(string) (string, bool)

func (e Env) get(name string) string {
	v, _ := e(name)
	return v
}

// Map is an Env over a map, for tests and local tools.
func Map(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// DB says how to reach PostgreSQL: a URL, a Secrets Manager secret holding
// the RDS credentials, or IAM authentication.
type DB struct {
	URL       string // DATABASE_URL
	SecretARN string // DB_SECRET_ARN
	IAMAuth   bool   // DB_IAM_AUTH
	Host      string // DB_HOST (IAM, or with the secret when it lacks a host)
	Port      int    // DB_PORT, default 5432
	Name      string // DB_NAME
	User      string // DB_USER
	Region    string // AWS_REGION (IAM tokens are signed for it)
}

// Redis says how to reach the cache.
type Redis struct {
	URL     string // REDIS_URL: redis:// or rediss://
	Cluster bool   // REDIS_CLUSTER
}

// DeleteThread is the delete-thread function's configuration.
type DeleteThread struct {
	DB           DB
	Redis        Redis
	QueueURL     string // SANDBOX_CLEANUP_QUEUE_URL
	JWTSecret    string // SUPABASE_JWT_SECRET
	JWKSURL      string // SUPABASE_JWKS_URL, or derived from SUPABASE_URL
	Audience     string // JWT_AUDIENCE; default "authenticated"; "" disables
	APIKeySecret string // API_KEY_SECRET; API keys are refused when unset

	// Issuer is the required iss: JWT_ISSUER when set (an empty value
	// disables the check), else {SUPABASE_URL}/auth/v1 when SUPABASE_URL
	// is set, else "" (unchecked).
	Issuer string
	// RequireSession is JWT_REQUIRE_SESSION: a JWT must carry the
	// session_id of a session that still exists (not signed out).
	RequireSession bool
	// MetricsNamespace is METRICS_NAMESPACE, the CloudWatch namespace of
	// the metrics in the log lines; default "ThreadDelete".
	MetricsNamespace string
}

// Cleanup is the sandbox-cleanup function's configuration.
type Cleanup struct {
	DB                    DB
	Redis                 Redis
	DaytonaURL            string        // DAYTONA_SERVER_URL
	DaytonaAPIKey         string        // DAYTONA_API_KEY
	DaytonaOrganizationID string        // DAYTONA_ORGANIZATION_ID (optional)
	QueueURL              string        // SANDBOX_CLEANUP_QUEUE_URL
	ResendAfter           time.Duration // OUTBOX_RESEND_AFTER, default 5m
	// Retention is OUTBOX_RETENTION: done outbox rows older than this are
	// deleted by the sweep; default 168h (7 days).
	Retention        time.Duration
	MetricsNamespace string // METRICS_NAMESPACE, default "ThreadDelete"
}

// Defaults of the settings that have one.
const (
	DefaultMetricsNamespace = "ThreadDelete"
	DefaultOutboxRetention  = 7 * 24 * time.Hour
)

// LoadDeleteThread reads the delete-thread settings.
func LoadDeleteThread(env Env) (DeleteThread, error) {
	var c DeleteThread
	var err error
	if c.DB, err = loadDB(env); err != nil {
		return c, err
	}
	if c.Redis, err = loadRedis(env); err != nil {
		return c, err
	}
	if c.QueueURL, err = requiredURL(env, "SANDBOX_CLEANUP_QUEUE_URL", "http", "https"); err != nil {
		return c, err
	}
	c.JWTSecret = env.get("SUPABASE_JWT_SECRET")
	// Supabase Auth serves its JWKS and names itself (iss) under
	// {SUPABASE_URL}/auth/v1.
	authBase := ""
	if base := strings.TrimRight(strings.TrimSpace(env.get("SUPABASE_URL")), "/"); base != "" {
		if _, err := parseURL("SUPABASE_URL", base, "http", "https"); err != nil {
			return c, err
		}
		authBase = base + "/auth/v1"
	}
	c.JWKSURL = strings.TrimSpace(env.get("SUPABASE_JWKS_URL"))
	switch {
	case c.JWKSURL != "":
		if _, err := parseURL("SUPABASE_JWKS_URL", c.JWKSURL, "http", "https"); err != nil {
			return c, err
		}
	case authBase != "":
		c.JWKSURL = authBase + "/.well-known/jwks.json"
	}
	if c.JWTSecret == "" && c.JWKSURL == "" {
		return c, fmt.Errorf("config: SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL (or SUPABASE_URL) must be set")
	}
	if aud, ok := env("JWT_AUDIENCE"); ok {
		c.Audience = aud
	} else {
		c.Audience = "authenticated"
	}
	if iss, ok := env("JWT_ISSUER"); ok {
		c.Issuer = iss
	} else {
		c.Issuer = authBase
	}
	if c.RequireSession, err = boolean(env, "JWT_REQUIRE_SESSION"); err != nil {
		return c, err
	}
	c.APIKeySecret = env.get("API_KEY_SECRET")
	c.MetricsNamespace, err = metricsNamespace(env)
	return c, err
}

// LoadCleanup reads the sandbox-cleanup settings.
func LoadCleanup(env Env) (Cleanup, error) {
	var c Cleanup
	var err error
	if c.DB, err = loadDB(env); err != nil {
		return c, err
	}
	if c.Redis, err = loadRedis(env); err != nil {
		return c, err
	}
	if c.DaytonaURL, err = requiredURL(env, "DAYTONA_SERVER_URL", "http", "https"); err != nil {
		return c, err
	}
	c.DaytonaURL = strings.TrimRight(c.DaytonaURL, "/")
	if c.DaytonaAPIKey = env.get("DAYTONA_API_KEY"); c.DaytonaAPIKey == "" {
		return c, missing("DAYTONA_API_KEY")
	}
	c.DaytonaOrganizationID = env.get("DAYTONA_ORGANIZATION_ID")
	if c.QueueURL, err = requiredURL(env, "SANDBOX_CLEANUP_QUEUE_URL", "http", "https"); err != nil {
		return c, err
	}
	if c.ResendAfter, err = duration(env, "OUTBOX_RESEND_AFTER", 5*time.Minute, "5m"); err != nil {
		return c, err
	}
	if c.Retention, err = duration(env, "OUTBOX_RETENTION", DefaultOutboxRetention, "168h"); err != nil {
		return c, err
	}
	c.MetricsNamespace, err = metricsNamespace(env)
	return c, err
}

// LoadDB reads only the database settings (DATABASE_URL, or DB_SECRET_ARN,
// or DB_IAM_AUTH with DB_HOST, DB_NAME, DB_USER), for operator tools.
func LoadDB(env Env) (DB, error) { return loadDB(env) }

// duration reads a positive Go duration; example goes into the error.
func duration(env Env, name string, def time.Duration, example string) (time.Duration, error) {
	v := env.get(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("config: %s must be a positive Go duration such as %s, got %q", name, example, v)
	}
	return d, nil
}

// metricsNamespace reads METRICS_NAMESPACE with CloudWatch's rules for a
// namespace: 1 to 255 of letters, digits and . - _ / # : and space, not
// beginning with "AWS/" (reserved for AWS services).
func metricsNamespace(env Env) (string, error) {
	v, ok := env("METRICS_NAMESPACE")
	if !ok {
		return DefaultMetricsNamespace, nil
	}
	bad := strings.TrimSpace(v) == "" || len(v) > 255 || strings.HasPrefix(v, "AWS/")
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_/#: ", r)) {
			bad = true
		}
	}
	if bad {
		return "", fmt.Errorf("config: METRICS_NAMESPACE must be 1 to 255 letters, digits or . - _ / # : and spaces, not starting with AWS/, got %q", v)
	}
	return v, nil
}

func loadDB(env Env) (DB, error) {
	db := DB{
		URL:       strings.TrimSpace(env.get("DATABASE_URL")),
		SecretARN: strings.TrimSpace(env.get("DB_SECRET_ARN")),
		Host:      env.get("DB_HOST"),
		Name:      env.get("DB_NAME"),
		User:      env.get("DB_USER"),
		Region:    env.get("AWS_REGION"),
		Port:      5432,
	}
	var err error
	if db.IAMAuth, err = boolean(env, "DB_IAM_AUTH"); err != nil {
		return db, err
	}
	if v := env.get("DB_PORT"); v != "" {
		if db.Port, err = strconv.Atoi(v); err != nil || db.Port <= 0 || db.Port > 65535 {
			return db, fmt.Errorf("config: DB_PORT must be a port number, got %q", v)
		}
	}
	switch {
	case db.IAMAuth:
		for _, v := range []struct{ name, val string }{{"DB_HOST", db.Host}, {"DB_NAME", db.Name}, {"DB_USER", db.User}, {"AWS_REGION", db.Region}} {
			if v.val == "" {
				return db, fmt.Errorf("config: %s must be set when DB_IAM_AUTH=true", v.name)
			}
		}
	case db.SecretARN != "":
		if !strings.HasPrefix(db.SecretARN, "arn:") {
			return db, fmt.Errorf("config: DB_SECRET_ARN must be a Secrets Manager ARN")
		}
	case db.URL == "":
		return db, fmt.Errorf("config: DATABASE_URL must be set (or DB_SECRET_ARN, or DB_IAM_AUTH=true with DB_HOST, DB_NAME, DB_USER)")
	default:
		if _, err := parseURL("DATABASE_URL", db.URL, "postgres", "postgresql"); err != nil {
			return db, err
		}
	}
	return db, nil
}

func loadRedis(env Env) (Redis, error) {
	var r Redis
	var err error
	if r.URL, err = requiredURL(env, "REDIS_URL", "redis", "rediss"); err != nil {
		return r, err
	}
	r.Cluster, err = boolean(env, "REDIS_CLUSTER")
	return r, err
}

func requiredURL(env Env, name string, schemes ...string) (string, error) {
	v := strings.TrimSpace(env.get(name))
	if v == "" {
		return "", missing(name)
	}
	_, err := parseURL(name, v, schemes...)
	return v, err
}

func parseURL(name, v string, schemes ...string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("config: %s is not a valid URL", name)
	}
	for _, s := range schemes {
		if strings.EqualFold(u.Scheme, s) {
			return u, nil
		}
	}
	return nil, fmt.Errorf("config: %s must be a %s:// URL", name, strings.Join(schemes, ":// or "))
}

func boolean(env Env, name string) (bool, error) {
	v := env.get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("config: %s must be true or false, got %q", name, v)
	}
	return b, nil
}

func missing(name string) error { return fmt.Errorf("config: %s must be set", name) }
