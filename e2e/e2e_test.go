// Package e2e runs both functions as built binaries under the Lambda
// runtime interface emulator, joined by a real SQS emulator, as they run in
// AWS: delete-thread sends the teardown, sandbox-cleanup consumes it and
// calls Daytona (the stand-in, the only fake).
package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

const daytonaKey = "e2e-daytona-key"

type world struct {
	seed     testenv.Seeder
	sqs      *awssqs.Client
	queueURL string
	daytona  *localstack.Daytona
	cleanup  *testenv.Lambda
	dbURL    string
	redisURL string
	endpoint string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{dbURL: testenv.Database(t), endpoint: testenv.SQS(t)}
	w.redisURL, _ = testenv.Redis(t)
	w.seed = testenv.Seeder{TB: t, Pool: testenv.Pool(t, w.dbURL)}
	w.queueURL, _ = testenv.Queue(t, w.endpoint, 30*time.Second, 5)
	w.sqs = testenv.SQSClient(w.endpoint)
	w.daytona = testenv.Daytona(t, daytonaKey)
	w.cleanup = testenv.StartLambda(t, testenv.Build(t, "sandbox-cleanup"), append(testenv.AWSEnv(w.endpoint),
		"DATABASE_URL="+w.dbURL,
		"REDIS_URL="+w.redisURL,
		"DAYTONA_SERVER_URL="+w.daytona.URL,
		"DAYTONA_API_KEY="+daytonaKey,
		"SANDBOX_CLEANUP_QUEUE_URL="+w.queueURL,
		"OUTBOX_RESEND_AFTER=1s",
	))
	return w
}

// deleteThread starts delete-thread under the emulator with queueURL (the
// real one, or an unreachable one) and deletes thread as owner.
func (w *world) deleteThread(t *testing.T, queueURL, thread, owner string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	fn := testenv.StartLambda(t, testenv.Build(t, "delete-thread"), append(testenv.AWSEnv(w.endpoint),
		"DATABASE_URL="+w.dbURL,
		"REDIS_URL="+w.redisURL,
		"SANDBOX_CLEANUP_QUEUE_URL="+queueURL,
		"SUPABASE_JWT_SECRET="+testenv.JWTSecret,
	))
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(fn.Invoke(t, testenv.DeleteEvent(t, thread, testenv.Token(owner))), &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// drain receives what the queue holds and hands it to sandbox-cleanup as
// the Lambda SQS integration would, deleting the messages it acknowledged.
// It returns the number of messages delivered.
func (w *world) drain(t *testing.T, wait int32) int {
	t.Helper()
	source := &localstack.Poller{
		Client: w.sqs, QueueURL: w.queueURL, Region: localstack.SQSRegion,
		Handler: func(_ context.Context, event json.RawMessage) (any, error) {
			return json.RawMessage(w.cleanup.Invoke(t, event)), nil
		},
	}
	n, err := source.Poll(context.Background(), time.Duration(wait)*time.Second)
	if err != nil {
		t.Fatalf("sandbox-cleanup answered badly: %v\n%s", err, w.cleanup.Logs())
	}
	return n
}

func (w *world) lastThreadWithSandbox(sandbox string) (owner, thread, resource string) {
	owner = w.seed.PersonalAccount()
	resource = w.seed.Sandbox(owner, sandbox)
	thread = w.seed.Thread(owner, w.seed.Project(owner, resource, ""), "")
	w.seed.Content(thread, 5, 1, 1)
	w.daytona.AddSandbox(sandbox)
	return owner, thread, resource
}

func TestDeleteToTeardownThroughTheQueue(t *testing.T) {
	w := newWorld(t)
	owner, thread, resource := w.lastThreadWithSandbox("sb-e2e-1")

	if resp := w.deleteThread(t, w.queueURL, thread, owner); resp.StatusCode != 200 {
		t.Fatalf("delete: %+v", resp)
	}
	if n := w.drain(t, 5); n != 1 {
		t.Fatalf("%d messages in the queue after the delete, want 1", n)
	}
	if calls := w.daytona.Calls("sb-e2e-1"); calls != 1 || w.daytona.Exists("sb-e2e-1") {
		t.Fatalf("Daytona saw %d DELETEs (exists %v), want exactly 1", calls, w.daytona.Exists("sb-e2e-1"))
	}
	if w.seed.Count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'deleted'`, resource) != 1 {
		t.Fatal("resource not marked deleted")
	}
	// The teardown is done; the delete's Redis work stays pending (applied
	// inline) until a sweep finds its marker.
	if w.seed.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'sandbox_teardown' AND status <> 'done'`) != 0 {
		t.Fatal("teardown left pending")
	}
	if n := w.drain(t, 1); n != 0 || w.daytona.TotalCalls() != 1 {
		t.Fatalf("queue not empty (%d) or extra Daytona calls (%d)", n, w.daytona.TotalCalls())
	}
}

func TestQueueDownThenSweeperDelivers(t *testing.T) {
	w := newWorld(t)
	owner, thread, resource := w.lastThreadWithSandbox("sb-e2e-2")

	// SQS unreachable during the delete: still a 200, the teardown waits in
	// the outbox.
	if resp := w.deleteThread(t, "http://127.0.0.1:1/000000000000/unreachable", thread, owner); resp.StatusCode != 200 {
		t.Fatalf("delete: %+v", resp)
	}
	if n := w.drain(t, 1); n != 0 {
		t.Fatalf("%d messages, want none yet", n)
	}
	// The schedule fires once the row is older than OUTBOX_RESEND_AFTER
	// (1s here) by the database's clock, the one the sweep goes by.
	testenv.WaitFor(t, 10*time.Second, "the pending teardown to be due", func() bool {
		return w.seed.Count(`SELECT count(*) FROM thread_delete.outbox
			WHERE kind = 'sandbox_teardown' AND status = 'pending' AND sends = 0 AND next_attempt_at <= now() - interval '1 second'`) == 1
	})
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "events", "scheduled-sweep.json"))
	if err != nil {
		t.Fatal(err)
	}
	if out := w.cleanup.Invoke(t, raw); !strings.Contains(string(out), `"resent":1`) {
		t.Fatalf("sweep: %s\n%s", out, w.cleanup.Logs())
	}
	if n := w.drain(t, 5); n != 1 {
		t.Fatalf("%d messages after the sweep, want 1", n)
	}
	if w.daytona.Calls("sb-e2e-2") != 1 || w.seed.Count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'deleted'`, resource) != 1 {
		t.Fatal("teardown not completed after the sweep")
	}
}
