package main_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

// TestUnderRuntimeEmulator runs the built bootstrap under aws-lambda-rie
// with a real-shaped event from events/, as Lambda would.
func TestUnderRuntimeEmulator(t *testing.T) {
	dbURL := testenv.Database(t)
	redisURL, rdb := testenv.Redis(t)
	ep := testenv.SQS(t)
	queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, dbURL)}
	owner := seed.PersonalAccount()
	thread := seed.Thread(owner, seed.Project(owner, "", ""), "")
	rdb.Set(t.Context(), "thread_count:"+owner, "3", 0)

	fn := testenv.StartLambda(t, testenv.Build(t, "delete-thread"), append(testenv.AWSEnv(ep),
		"DATABASE_URL="+dbURL,
		"REDIS_URL="+redisURL,
		"SANDBOX_CLEANUP_QUEUE_URL="+queueURL,
		"SUPABASE_JWT_SECRET="+testenv.JWTSecret,
	))

	payload := string(testenv.DeleteEvent(t, thread, testenv.Token(owner)))

	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(fn.Invoke(t, []byte(payload)), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Headers["Content-Type"] != "application/json" {
		t.Fatalf("response %+v\nlogs:\n%s", resp, fn.Logs())
	}
	if want := `{"message":"Thread deleted successfully","thread_id":"` + thread + `"}`; resp.Body != want {
		t.Fatalf("body %s, want %s", resp.Body, want)
	}
	if seed.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, thread) != 0 {
		t.Fatal("thread not deleted")
	}
	if got := rdb.Get(t.Context(), "thread_count:"+owner).Val(); got != "2" {
		t.Fatalf("thread_count = %s, want 2", got)
	}
	// The JSON log line carries the request id and the outcome, never the token.
	logs := fn.Logs()
	if !strings.Contains(logs, `"outcome":"deleted"`) || !strings.Contains(logs, `"requestId"`) {
		t.Fatalf("structured log missing:\n%s", logs)
	}
	if strings.Contains(logs, testenv.Token(owner)[:40]) {
		t.Fatal("the token was logged")
	}

	// A second invoke of the same environment reuses its clients.
	invalid := strings.ReplaceAll(payload, thread, "not-a-uuid")
	if err := json.Unmarshal(fn.Invoke(t, []byte(invalid)), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 || resp.Body != `{"detail":"Invalid thread ID"}` {
		t.Fatalf("invalid id: %+v", resp)
	}
}

// TestBadSettingFailsInitWithOneLine runs the binary as Lambda's init would,
// with a setting missing or malformed.
func TestBadSettingFailsInitWithOneLine(t *testing.T) {
	bin := testenv.Build(t, "delete-thread")
	base := map[string]string{
		"DATABASE_URL":              "postgres://u@127.0.0.1:1/db",
		"REDIS_URL":                 "redis://127.0.0.1:1",
		"SANDBOX_CLEANUP_QUEUE_URL": "http://127.0.0.1:1/0/q",
		"SUPABASE_JWT_SECRET":       "x",
	}
	for _, tc := range []struct{ name, value, want string }{
		{"DATABASE_URL", "", "DATABASE_URL"},
		{"REDIS_URL", "memcached://x", "REDIS_URL"},
		{"SUPABASE_JWT_SECRET", "", "SUPABASE_JWT_SECRET"},
	} {
		env := []string{"PATH=" + os.Getenv("PATH"), "AWS_LAMBDA_RUNTIME_API=127.0.0.1:1"}
		for k, v := range base {
			if k == tc.name {
				v = tc.value
			}
			env = append(env, k+"="+v)
		}
		cmd := exec.Command(bin)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("%s=%q: init succeeded", tc.name, tc.value)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
			t.Fatalf("%s=%q: want one line naming %s, got:\n%s", tc.name, tc.value, tc.want, out)
		}
	}
}
