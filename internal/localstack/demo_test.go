package localstack

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/shared/auth"
)

func TestTokenIsAcceptedByTheService(t *testing.T) {
	a, err := auth.New(auth.Config{HS256Secret: []byte(JWTSecret), Audience: "authenticated"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Token(JWTSecret, OwnerUserID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	caller, err := a.Authenticate(context.Background(), "Bearer "+tok, "", false)
	if err != nil || caller.UserID != OwnerUserID {
		t.Fatalf("caller %+v, err %v", caller, err)
	}
}

// The sample events name the demo data; make dev must seed what they name.
func TestEventsMatchTheDemoData(t *testing.T) {
	tests := []struct {
		file, thread, apiKey string
	}{
		{"delete-thread.json", ThreadID, ""},
		{"delete-thread-forbidden.json", OtherThreadID, ""},
		{"delete-thread-api-key.json", ThreadID, APIKey},
	}
	for _, tc := range tests {
		b, err := os.ReadFile(filepath.Join("..", "..", "events", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		var ev events.APIGatewayV2HTTPRequest
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if got := ev.PathParameters["thread_id"]; got != tc.thread {
			t.Errorf("%s: thread %s, want %s", tc.file, got, tc.thread)
		}
		if tc.apiKey != "" && ev.Headers["x-api-key"] != tc.apiKey {
			t.Errorf("%s: x-api-key %q, want the demo key", tc.file, ev.Headers["x-api-key"])
		}
	}
}

func TestAPIKeyHash(t *testing.T) {
	if got, want := APIKeyHash(), auth.HashSecret([]byte(APIKeySecret), APIKeySecretPart); got != want || len(got) != 64 {
		t.Fatalf("hash %q", got)
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/thread_delete_dev?sslmode=disable"},
		{"postgresql://u:p%40ss@db:6543/admin", "postgresql://u:p%40ss@db:6543/thread_delete_dev"},
	}
	for _, tc := range tests {
		got, err := WithDatabase(tc.in, DatabaseName)
		if err != nil || got != tc.want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := WithDatabase("mysql://x/y", "z"); err == nil {
		t.Error("a non-postgres URL was accepted")
	}
	if got := Redact("postgres://u:secret@h/d"); got != "postgres://u:xxxxx@h/d" {
		t.Errorf("Redact = %q", got)
	}
}
