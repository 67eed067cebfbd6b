package handler_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/app"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/cleanup/handler"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

const apiKey = "handler-test-key"

// world: a database, the Daytona stand-in, a queue with a DLQ on the SQS
// emulator, and the Handler wired to all of them.
type world struct {
	testenv.Seeder
	daytona  *localstack.Daytona
	client   *awssqs.Client
	endpoint string
	queueURL string
	dlqURL   string
	pub      *sqs.Publisher
	h        *handler.Handler
}

func newWorld(t *testing.T, visibility time.Duration, maxReceive int) *world {
	t.Helper()
	url := testenv.Database(t)
	pool := testenv.ServicePool(t, url, 4)
	ep := testenv.SQS(t)
	w := &world{Seeder: testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}, daytona: testenv.Daytona(t, apiKey), client: testenv.SQSClient(ep), endpoint: ep}
	w.queueURL, w.dlqURL = testenv.Queue(t, ep, visibility, maxReceive)
	w.pub = &sqs.Publisher{Client: w.client, QueueURL: w.queueURL}
	// The function's own wiring (no Redis: these tests are about teardowns).
	w.h = app.NewSandboxCleanup(config.Cleanup{DaytonaURL: w.daytona.URL, DaytonaAPIKey: apiKey},
		&app.Clients{Pool: pool, Queue: w.pub}, slog.New(slog.DiscardHandler))
	return w
}

// teardown seeds a sandbox and its pending outbox row, as a project delete
// leaves them, and returns the teardown.
func (w *world) teardown() (threads.Teardown, string) {
	w.TB.Helper()
	acct := w.PersonalAccount()
	td := threads.Teardown{ProjectID: testenv.NewUUID(), AccountID: acct, SandboxID: "sb-" + testenv.NewUUID()[:8], ThreadID: testenv.NewUUID(), RequestedAt: time.Now()}
	resourceID := w.Sandbox(acct, td.SandboxID)
	td.ResourceID = resourceID
	w.daytona.AddSandbox(td.SandboxID)
	payload, _ := json.Marshal(td)
	if err := w.Pool.QueryRow(context.Background(),
		`INSERT INTO thread_delete.outbox (kind, payload) VALUES ('sandbox_teardown', $1::jsonb) RETURNING id::text`, string(payload)).Scan(&td.JobID); err != nil {
		w.TB.Fatal(err)
	}
	return td, resourceID
}

func (w *world) status(jobID string) (status string, attempts int, lastErr string) {
	w.TB.Helper()
	if err := w.Pool.QueryRow(context.Background(),
		`SELECT status, attempts, coalesce(last_error, '') FROM thread_delete.outbox WHERE id = $1`, jobID).Scan(&status, &attempts, &lastErr); err != nil {
		w.TB.Fatal(err)
	}
	return
}

func sqsEvent(records ...events.SQSMessage) json.RawMessage {
	for i := range records {
		records[i].EventSource = "aws:sqs"
		records[i].AWSRegion = "us-east-1"
	}
	b, _ := json.Marshal(events.SQSEvent{Records: records})
	return b
}

func body(t *testing.T, m sqs.Message) string {
	b, err := sqs.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func failures(t *testing.T, out any) []string {
	t.Helper()
	resp, ok := out.(events.SQSEventResponse)
	if !ok {
		t.Fatalf("response %T, want events.SQSEventResponse", out)
	}
	var ids []string
	for _, f := range resp.BatchItemFailures {
		ids = append(ids, f.ItemIdentifier)
	}
	slices.Sort(ids)
	return ids
}

func TestSQSBatchWithMalformedMessages(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 30*time.Second, 0)
	good, goodRes := w.teardown()
	flaky, _ := w.teardown()
	w.daytona.FailNext(flaky.SandboxID, 1, 500)

	ev := sqsEvent(
		events.SQSMessage{MessageId: "good", Body: body(t, sqs.TeardownMessage(good))},
		events.SQSMessage{MessageId: "not-json", Body: "DELETE sandbox please"},
		events.SQSMessage{MessageId: "v2", Body: strings.Replace(body(t, sqs.TeardownMessage(good)), `"version":1`, `"version":2`, 1)},
		events.SQSMessage{MessageId: "no-job", Body: `{"version":1,"kind":"sandbox_teardown","sandbox_id":"x"}`},
		events.SQSMessage{MessageId: "flaky", Body: body(t, sqs.TeardownMessage(flaky))},
	)
	out, err := w.h.Invoke(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := failures(t, out), []string{"flaky", "no-job", "not-json", "v2"}; !slices.Equal(got, want) {
		t.Fatalf("batchItemFailures %v, want %v", got, want)
	}
	if s, _, _ := w.status(good.JobID); s != "done" || w.daytona.Exists(good.SandboxID) {
		t.Fatalf("good teardown: %s", s)
	}
	if n := w.Count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'deleted'`, goodRes); n != 1 {
		t.Fatal("resource not marked deleted")
	}
	// The response is what Lambda expects on the wire.
	b, _ := json.Marshal(out)
	if !strings.Contains(string(b), `"batchItemFailures":[{"itemIdentifier":`) {
		t.Fatalf("wire form %s", b)
	}
	// An all-good batch answers an empty list, not null.
	other, _ := w.teardown()
	out, _ = w.h.Invoke(context.Background(), sqsEvent(events.SQSMessage{MessageId: "m", Body: body(t, sqs.TeardownMessage(other))}))
	if b, _ := json.Marshal(out); string(b) != `{"batchItemFailures":[]}` {
		t.Fatalf("all good: %s", b)
	}
}

func TestScheduledEventRunsTheSweep(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 30*time.Second, 0)
	td, _ := w.teardown()
	w.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '1 hour' WHERE id = $1`, td.JobID)

	ev := []byte(`{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event","source":"aws.events",
		"account":"123456789012","time":"2025-01-01T00:00:00Z","region":"us-east-1",
		"resources":["arn:aws:events:us-east-1:123456789012:rule/sweep"],"detail":{}}`)
	out, err := w.h.Invoke(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if rep, ok := out.(cleanup.SweepReport); !ok || rep.Resent != 1 {
		t.Fatalf("sweep answered %#v", out)
	}
	msgs, err := w.client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{QueueUrl: aws.String(w.queueURL), WaitTimeSeconds: 2})
	if err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("queue: %v %v", msgs, err)
	}
	if m, err := sqs.Parse([]byte(aws.ToString(msgs.Messages[0].Body))); err != nil || m.JobID != td.JobID || m.SandboxID != td.SandboxID {
		t.Fatalf("re-sent %+v %v", m, err)
	}
}

func TestUnsupportedEvents(t *testing.T) {
	t.Parallel()
	h := &handler.Handler{Log: slog.New(slog.DiscardHandler)}
	for _, ev := range []string{`{}`, `{"detail-type":"Object Created"}`, `[]`, `"x"`, `not json`} {
		if _, err := h.Invoke(context.Background(), json.RawMessage(ev)); !errors.Is(err, handler.ErrUnsupportedEvent) {
			t.Errorf("%s: error %v", ev, err)
		}
	}
}

// receiveAndHandle is one poll of the queue by the event source mapping:
// receive a batch, invoke the handler, delete what succeeded.
func (w *world) receiveAndHandle(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	out, err := w.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
		QueueUrl: aws.String(w.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) == 0 {
		return 0
	}
	var recs []events.SQSMessage
	for _, m := range out.Messages {
		recs = append(recs, events.SQSMessage{MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body)})
	}
	res, err := w.h.Invoke(ctx, sqsEvent(recs...))
	if err != nil {
		t.Fatal(err)
	}
	failed := failures(t, res)
	for _, r := range recs {
		if !slices.Contains(failed, r.MessageId) {
			if _, err := w.client.DeleteMessage(ctx, &awssqs.DeleteMessageInput{QueueUrl: aws.String(w.queueURL), ReceiptHandle: aws.String(r.ReceiptHandle)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return len(recs)
}

func TestThroughTheQueue(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 1*time.Second, 3)
	td, _ := w.teardown()
	w.daytona.FailNext(td.SandboxID, 1, 409) // the first attempt meets a sandbox still starting
	if err := w.pub.SendTeardowns(context.Background(), []threads.Teardown{td}); err != nil {
		t.Fatal(err)
	}
	// A duplicate send (delete-thread's send plus an early sweep).
	if err := w.pub.SendTeardowns(context.Background(), []threads.Teardown{td}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		w.receiveAndHandle(t)
		if s, _, _ := w.status(td.JobID); s == "done" {
			break
		}
	}
	if s, attempts, lastErr := w.status(td.JobID); s != "done" || !strings.Contains(lastErr, "409") || attempts != 2 {
		t.Fatalf("row %s after %d attempts (%s)", s, attempts, lastErr)
	}
	// Deliver until the queue is empty (nothing visible, in flight or
	// delayed): the duplicate is acknowledged without another call.
	testenv.WaitFor(t, 20*time.Second, "the duplicate to be acknowledged", func() bool {
		if testenv.QueueDepth(t, w.endpoint, w.queueURL) == 0 {
			return true
		}
		w.receiveAndHandle(t)
		return false
	})
	if n := w.daytona.Calls(td.SandboxID); n != 2 {
		t.Fatalf("%d Daytona calls, want 2 (one 409, one success)", n)
	}
	if w.daytona.Exists(td.SandboxID) {
		t.Fatal("sandbox still exists")
	}
}

// The emulator's redrive: a message that keeps failing goes to the DLQ after
// maxReceiveCount deliveries, and the outbox row says why.
func TestRepeatedFailureReachesTheDLQ(t *testing.T) {
	t.Parallel()
	const maxReceive = 3
	w := newWorld(t, 1*time.Second, maxReceive)
	td, resourceID := w.teardown()
	w.daytona.FailNext(td.SandboxID, 100, 503)
	if err := w.pub.SendTeardowns(context.Background(), []threads.Teardown{td}); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	var dead []types.Message
	for time.Now().Before(deadline) && len(dead) == 0 {
		w.receiveAndHandle(t)
		out, err := w.client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(w.dlqURL), MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		dead = out.Messages
	}
	if len(dead) != 1 {
		t.Fatalf("DLQ holds %d messages after 30s", len(dead))
	}
	if m, err := sqs.Parse([]byte(aws.ToString(dead[0].Body))); err != nil || m.JobID != td.JobID {
		t.Fatalf("DLQ message %v %v", m, err)
	}
	status, attempts, lastErr := w.status(td.JobID)
	if status != "pending" || attempts != maxReceive || !strings.Contains(lastErr, "HTTP 503") {
		t.Fatalf("outbox row %s, %d attempts, last_error %q; want pending, %d, HTTP 503", status, attempts, lastErr, maxReceive)
	}
	if n := w.daytona.Calls(td.SandboxID); n != maxReceive {
		t.Fatalf("%d Daytona calls, want %d", n, maxReceive)
	}
	if n := w.Count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'active'`, resourceID); n != 1 {
		t.Fatal("resource changed although the teardown never succeeded")
	}
}

// A bulk delete hands many teardowns over in batches; the worker receives
// each once and completes it.
func TestBatchedTeardownsThroughTheQueue(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 30*time.Second, 0)
	var tds []threads.Teardown
	for range 12 {
		td, _ := w.teardown()
		tds = append(tds, td)
	}
	if err := w.pub.SendTeardowns(context.Background(), tds); err != nil {
		t.Fatal(err)
	}
	for handled := 0; handled < len(tds); {
		n := w.receiveAndHandle(t)
		if n == 0 {
			t.Fatalf("queue empty after %d of %d messages", handled, len(tds))
		}
		handled += n
	}
	for _, td := range tds {
		if s, attempts, _ := w.status(td.JobID); s != "done" || attempts != 1 || w.daytona.Calls(td.SandboxID) != 1 || w.daytona.Exists(td.SandboxID) {
			t.Fatalf("teardown %s: row %s after %d attempts, %d Daytona calls", td.JobID, s, attempts, w.daytona.Calls(td.SandboxID))
		}
	}
	if n := w.receiveAndHandle(t); n != 0 {
		t.Fatalf("%d more messages after every teardown arrived once", n)
	}
}
