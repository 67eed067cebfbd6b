package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/auth"
)

// minimalEnv is an environment without any of the service's settings, so
// that every dev default applies.
func minimalEnv() []string {
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
}

func TestInvokeInvalidIDEndToEnd(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), Options{
		Bootstrap: testenv.Build(t, "delete-thread"),
		Event:     filepath.Join(testenv.RepoRoot(t), "events", "delete-thread-invalid-id.json"),
		RIE:       testenv.RIEBinary(t),
		Environ:   minimalEnv(),
		Stdout:    &stdout,
		Stderr:    &stderr,
	})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		t.Fatalf("stdout is not a response: %v\n%s", err, stdout.String())
	}
	if resp.StatusCode != 400 || resp.Body != `{"detail":"Invalid thread ID"}` || resp.Headers["Content-Type"] != "application/json" {
		t.Fatalf("response %+v", resp)
	}
	logs := stderr.String()
	for _, want := range []string{"dev stack's values are used", "DATABASE_URL", `"outcome":"invalid_id"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, logs)
		}
	}
}

func TestInvokeExplainsWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	event := filepath.Join(dir, "event.json")
	if err := os.WriteFile(event, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bootstrap := filepath.Join(dir, "fn", "bootstrap")
	err := run(context.Background(), Options{Bootstrap: bootstrap, Event: event, Environ: minimalEnv(), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("missing bootstrap: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(bootstrap), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bootstrap, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), Options{Bootstrap: bootstrap, Event: event, RIE: filepath.Join(dir, "nope"), Environ: minimalEnv(), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})
	if err == nil || !strings.Contains(err.Error(), "aws-lambda-rie not found") {
		t.Fatalf("missing emulator: %v", err)
	}
}

func TestDevDefaults(t *testing.T) {
	env, added := withDevDefaults(minimalEnv())
	for _, name := range []string{"DATABASE_URL", "REDIS_URL", "SANDBOX_CLEANUP_QUEUE_URL", "AWS_ENDPOINT_URL_SQS", "SUPABASE_JWT_SECRET", "API_KEY_SECRET", "DAYTONA_SERVER_URL", "DAYTONA_API_KEY"} {
		if v, ok := lookup(env, name); !ok || v == "" {
			t.Errorf("%s not defaulted", name)
		}
	}
	if len(added) == 0 {
		t.Fatal("no defaults reported")
	}

	// A real configuration is kept, and no dev value is mixed into it.
	real := append(minimalEnv(),
		"DB_SECRET_ARN=arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
		"SANDBOX_CLEANUP_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123456789012/q",
		"SUPABASE_URL=https://abc.supabase.co",
		"API_KEY_SECRET=",
		"REDIS_URL=rediss://cache:6379",
		"AWS_REGION=eu-west-1",
	)
	env, added = withDevDefaults(real)
	for _, name := range []string{"DATABASE_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ACCESS_KEY_ID", "SUPABASE_JWT_SECRET", "AWS_REGION", "REDIS_URL"} {
		for _, a := range added {
			if a == name {
				t.Errorf("%s defaulted although the environment configures its own", name)
			}
		}
	}
	if v, _ := lookup(env, "API_KEY_SECRET"); v != "" {
		t.Errorf("an explicitly empty API_KEY_SECRET became %q", v)
	}
}

func TestMintedTokenVerifiesWithTheFunctionsSecret(t *testing.T) {
	env := append(minimalEnv(), "SUPABASE_JWT_SECRET=someone-elses-secret")
	tok, err := mintToken(env, "member")
	if err != nil {
		t.Fatal(err)
	}
	a, err := auth.New(auth.Config{HS256Secret: []byte("someone-elses-secret"), Audience: "authenticated"})
	if err != nil {
		t.Fatal(err)
	}
	caller, err := a.Authenticate(context.Background(), "Bearer "+tok, "", false)
	if err != nil || caller.UserID != localstack.MemberUserID {
		t.Fatalf("caller %+v, err %v", caller, err)
	}
	if _, err := mintToken(minimalEnv(), "owner"); err == nil {
		t.Error("minted a token without a secret")
	}
	if _, err := mintToken(env, "nobody"); err == nil {
		t.Error("minted a token for an unknown user")
	}
}
