package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/daytona"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// calls counts the SQS actions a client makes (the JSON protocol names
// each in X-Amz-Target).
type calls struct {
	mu  sync.Mutex
	got map[string]int
}

func (c *calls) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.got[strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")]++
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *calls) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.got {
		out[k] = v
	}
	return out
}

// opsWorld is a database with the service's schema, a queue with its
// dead-letter queue on the SQS emulator, and the settings the command reads.
type opsWorld struct {
	testenv.Seeder
	ep, queue, dlq string
	vars           map[string]string
	sqs            *awssqs.Client
	calls          *calls
}

func newOpsWorld(t *testing.T) *opsWorld {
	t.Helper()
	url := testenv.Database(t)
	ep := testenv.SQS(t)
	queue, dlq := testenv.Queue(t, ep, 30*time.Second, 3)
	c := &calls{got: map[string]int{}}
	return &opsWorld{
		Seeder: testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)},
		ep:     ep, queue: queue, dlq: dlq,
		vars: map[string]string{"DATABASE_URL": url, "SANDBOX_CLEANUP_QUEUE_URL": queue, "SANDBOX_CLEANUP_DLQ_URL": dlq},
		sqs: awssqs.New(awssqs.Options{Region: "us-east-1", BaseEndpoint: aws.String(ep),
			Credentials: aws.AnonymousCredentials{}, HTTPClient: &http.Client{Transport: c}}),
		calls: c,
	}
}

// run runs one command line and returns its output.
func (w *opsWorld) run(args ...string) (string, error) {
	w.TB.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, args, env{vars: config.Map(w.vars), out: &out, sqs: w.sqs})
	return out.String(), err
}

// row inserts an outbox row written two hours ago, tried 5 times (a dead
// one re-sent 20 times), and returns its id.
func (w *opsWorld) row(kind, status string, payload any, lastError string) string {
	w.TB.Helper()
	b, _ := json.Marshal(payload)
	var id string
	if err := w.Pool.QueryRow(context.Background(), `
		INSERT INTO thread_delete.outbox (kind, payload, status, attempts, sends, last_error, created_at)
		VALUES ($1, $2::jsonb, $3, 5, CASE WHEN $3 = 'dead' THEN 20 ELSE 0 END, nullif($4, ''), now() - interval '2 hours') RETURNING id::text`,
		kind, string(b), status, lastError).Scan(&id); err != nil {
		w.TB.Fatal(err)
	}
	return id
}

// receiveAll drains a queue and returns its messages.
func (w *opsWorld) receiveAll(queue string) []types.Message {
	w.TB.Helper()
	client := testenv.SQSClient(w.ep)
	var all []types.Message
	for {
		out, err := client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(queue), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			w.TB.Fatal(err)
		}
		if len(out.Messages) == 0 {
			return all
		}
		for _, m := range out.Messages {
			all = append(all, m)
			client.DeleteMessage(context.Background(), &awssqs.DeleteMessageInput{QueueUrl: aws.String(queue), ReceiptHandle: m.ReceiptHandle}) //nolint:errcheck
		}
	}
}

// deadLetters puts n teardown messages and one that is no job at all into
// the dead-letter queue, as the queue's redrive policy would, and returns
// their bodies.
func (w *opsWorld) deadLetters(n int) []string {
	w.TB.Helper()
	client := testenv.SQSClient(w.ep)
	var bodies []string
	for i := range n {
		b, err := sqs.Encode(sqs.TeardownMessage(threads.Teardown{JobID: testenv.NewUUID(), SandboxID: fmt.Sprintf("sb-%d", i)}))
		if err != nil {
			w.TB.Fatal(err)
		}
		bodies = append(bodies, string(b))
	}
	bodies = append(bodies, "not a job")
	for start := 0; start < len(bodies); start += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for i, b := range bodies[start:min(start+10, len(bodies))] {
			entries = append(entries, types.SendMessageBatchRequestEntry{
				Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(b),
				MessageAttributes: map[string]types.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String("sandbox_teardown")}},
			})
		}
		out, err := client.SendMessageBatch(context.Background(), &awssqs.SendMessageBatchInput{QueueUrl: aws.String(w.dlq), Entries: entries})
		if err != nil || len(out.Failed) > 0 {
			w.TB.Fatalf("seed the dead-letter queue: %v %+v", err, out)
		}
	}
	return bodies
}

// The re-drive moves every message of the dead-letter queue to the queue
// exactly once, bodies and attributes intact, with batched calls only, and
// says what it moved.
func TestRedriveMovesEachMessageOnce(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	bodies := w.deadLetters(23)

	out, err := w.run("redrive")
	if err != nil {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	if !strings.Contains(out, "24 message(s) moved from the dead-letter queue to the queue") ||
		strings.Count(out, "\nmoved ")+boolInt(strings.HasPrefix(out, "moved ")) != 24 || !strings.Contains(out, "(not a valid job message)") {
		t.Fatalf("output does not account for the 24 messages:\n%s", out)
	}
	if d := testenv.QueueDepth(t, w.ep, w.dlq); d != 0 {
		t.Fatalf("dead-letter queue still holds %d messages", d)
	}
	got := w.receiveAll(w.queue)
	var gotBodies []string
	for _, m := range got {
		gotBodies = append(gotBodies, aws.ToString(m.Body))
		if a := m.MessageAttributes["kind"]; aws.ToString(a.StringValue) != "sandbox_teardown" {
			t.Errorf("message %s lost its kind attribute: %+v", aws.ToString(m.MessageId), m.MessageAttributes)
		}
	}
	slices.Sort(gotBodies)
	slices.Sort(bodies)
	if !slices.Equal(gotBodies, bodies) {
		t.Fatalf("the queue got %d messages, want each of the %d once", len(gotBodies), len(bodies))
	}
	c := w.calls.snapshot()
	if c["SendMessage"] != 0 || c["DeleteMessage"] != 0 || c["SendMessageBatch"] < 3 || c["DeleteMessageBatch"] != c["SendMessageBatch"] {
		t.Fatalf("SQS calls %v: want batches only, at least 3 sends of 10 and one delete per send", c)
	}

	// Nothing left: a second run moves nothing and sends nothing.
	out, err = w.run("redrive")
	if err != nil || !strings.Contains(out, "0 message(s) moved") || w.calls.snapshot()["SendMessageBatch"] != c["SendMessageBatch"] {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if got := w.receiveAll(w.queue); len(got) != 0 {
		t.Fatalf("second run sent %d messages", len(got))
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestRedriveMax(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	w.deadLetters(11) // 12 messages
	out, err := w.run("redrive", "-max", "5")
	if err != nil || !strings.Contains(out, "5 message(s) moved") {
		t.Fatalf("redrive -max 5: %v\n%s", err, out)
	}
	if got := w.receiveAll(w.queue); len(got) != 5 {
		t.Fatalf("queue got %d messages, want 5", len(got))
	}
	if d := testenv.QueueDepth(t, w.ep, w.dlq); d != 7 {
		t.Fatalf("dead-letter queue holds %d messages, want 7", d)
	}
}

// When the queue refuses the messages, none is deleted from the dead-letter
// queue: nothing is lost, and the run says it failed.
func TestRedriveToAMissingQueueLosesNothing(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	w.deadLetters(4)
	w.vars["SANDBOX_CLEANUP_QUEUE_URL"] = w.queue + "-no-such-queue"
	out, err := w.run("redrive")
	if err == nil {
		t.Fatalf("redrive to a missing queue succeeded:\n%s", out)
	}
	if d := testenv.QueueDepth(t, w.ep, w.dlq); d != 5 {
		t.Fatalf("dead-letter queue holds %d messages after a failed redrive, want all 5", d)
	}
	if c := w.calls.snapshot(); c["DeleteMessageBatch"] != 0 {
		t.Fatalf("deleted from the dead-letter queue although nothing was sent: %v", c)
	}
}

// Re-queued dead jobs are pending again; teardowns are on the queue, and
// the worker and the sweeper complete them.
func TestRequeue(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	const daytonaKey = "test-daytona-key"
	day := testenv.Daytona(t, daytonaKey)
	day.AddSandbox("sb-dead-1", "sb-dead-2")
	dead1 := w.row(cleanup.KindTeardown, "dead", threads.Teardown{SandboxID: "sb-dead-1", ProjectID: testenv.NewUUID()}, "gave up after 20 re-sends; last error: daytona: HTTP 500")
	dead2 := w.row(cleanup.KindTeardown, "dead", threads.Teardown{SandboxID: "sb-dead-2"}, "daytona: permanent: HTTP 403")
	account := testenv.NewUUID()
	deadWork := w.row(cleanup.KindRedisWork, "dead", threads.CacheWork{Accounts: []threads.AccountDelta{{AccountID: account, Threads: 1}}, ThreadIDs: []string{testenv.NewUUID()}}, "redis: connection refused")
	pending := w.row(cleanup.KindTeardown, "pending", threads.Teardown{SandboxID: "sb-pending"}, "")
	done := w.row(cleanup.KindTeardown, "done", threads.Teardown{SandboxID: "sb-done"}, "")
	unknown := testenv.NewUUID()
	before := w.Snapshot()

	// Bad input is refused before anything changes.
	if _, err := w.run("requeue", dead1, "not-a-uuid"); !errors.Is(err, errUsage) {
		t.Fatalf("requeue with a bad id: %v, want a usage error", err)
	}
	if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE status = 'dead'`); n != 3 {
		t.Fatalf("a refused requeue changed %d rows", 3-n)
	}

	// One dead job by id, among ids that cannot be re-queued.
	out, err := w.run("requeue", strings.ToUpper(dead1), pending, done, unknown)
	if !errors.Is(err, errIncomplete) {
		t.Fatalf("requeue of a dead, a pending, a done and an unknown job: %v, want errIncomplete\n%s", err, out)
	}
	for _, want := range []string{
		"re-queued " + dead1 + " (sandbox_teardown): pending again and sent to the queue",
		"not re-queued " + pending + ": it is pending, not dead",
		"not re-queued " + done + ": it is done, not dead",
		"not re-queued " + unknown + ": no such job",
		"1 job(s) re-queued",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The rest with -all.
	out, err = w.run("requeue", "-all")
	if err != nil {
		t.Fatalf("requeue -all: %v\n%s", err, out)
	}
	for _, want := range []string{
		"re-queued " + dead2 + " (sandbox_teardown): pending again and sent to the queue",
		"re-queued " + deadWork + " (redis_work): pending again; the next outbox sweep completes it",
		"2 job(s) re-queued",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, id := range []string{dead1, dead2, deadWork} {
		var status, lastErr string
		var sends, attempts int
		var due bool
		if err := w.Pool.QueryRow(context.Background(), `SELECT status, sends, attempts, next_attempt_at <= now(), last_error FROM thread_delete.outbox WHERE id = $1`, id).
			Scan(&status, &sends, &attempts, &due, &lastErr); err != nil {
			t.Fatal(err)
		}
		if status != "pending" || sends != 0 || attempts != 5 || !due || !strings.HasPrefix(lastErr, "before the re-queue: ") {
			t.Fatalf("re-queued row %s: %s, %d sends, %d attempts, due %v, %q", id, status, sends, attempts, due, lastErr)
		}
	}
	if after := w.Snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("requeue touched Kortix's tables: %v → %v", before, after)
	}

	// The worker completes the teardowns from the messages sent.
	store := &postgres.OutboxStore{Pool: testenv.ServicePool(t, w.vars["DATABASE_URL"], 4)}
	worker := &cleanup.Worker{Outbox: store, Destroyer: daytona.New(day.URL, daytonaKey, ""), Log: quietLog()}
	var jobs []cleanup.Job
	for _, m := range w.receiveAll(w.queue) {
		msg, err := sqs.Parse([]byte(aws.ToString(m.Body)))
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, cleanup.Job{ID: aws.ToString(m.MessageId), OutboxID: msg.JobID, Kind: msg.Kind})
	}
	if len(jobs) != 2 {
		t.Fatalf("%d messages on the queue, want the 2 re-queued teardowns", len(jobs))
	}
	if failed := worker.Handle(context.Background(), jobs); len(failed) != 0 {
		t.Fatalf("worker failed %v", failed)
	}
	if day.Exists("sb-dead-1") || day.Exists("sb-dead-2") {
		t.Fatal("the re-queued teardowns did not tear the sandboxes down")
	}
	// The sweeper completes the Redis work.
	redisURL, rdb := testenv.Redis(t)
	rc, err := redis.NewClient(redis.Options{URL: redisURL})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	rdb.Set(context.Background(), "thread_count:"+account, "4", 0)
	sweeper := &cleanup.Sweeper{Outbox: store, Queue: &sqs.Publisher{Client: w.sqs, QueueURL: w.queue}, Cache: &redis.Cache{Client: rc}, Log: quietLog()}
	if rep, err := sweeper.Sweep(context.Background()); err != nil || rep.CacheDone != 1 {
		t.Fatalf("sweep after the re-queue: %+v %v, want the Redis work completed", rep, err)
	}
	if n := rdb.Exists(context.Background(), "thread_count:"+account).Val(); n != 0 {
		t.Fatal("the re-queued Redis work was not applied (its counter is still there)")
	}
	if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = ANY($1::uuid[]) AND status = 'done'`, []string{dead1, dead2, deadWork}); n != 3 {
		t.Fatalf("%d of the 3 re-queued jobs done", n)
	}
	if out, err := w.run("requeue", "-all"); err != nil || !strings.Contains(out, "0 job(s) re-queued") {
		t.Fatalf("nothing left to re-queue: %v\n%s", err, out)
	}
}

func TestList(t *testing.T) {
	t.Parallel()
	w := newOpsWorld(t)
	dead := w.row(cleanup.KindTeardown, "dead", threads.Teardown{SandboxID: "sb-dead"}, "gave up after 20 re-sends;\nlast error: daytona: HTTP 500")
	pending := w.row(cleanup.KindTeardown, "pending", threads.Teardown{SandboxID: "sb-pending"}, "re-send failed: sqs down")
	work := w.row(cleanup.KindRedisWork, "pending", threads.CacheWork{ThreadIDs: []string{testenv.NewUUID()}}, "")
	done := w.row(cleanup.KindTeardown, "done", threads.Teardown{SandboxID: "sb-done"}, "")

	out, err := w.run("list")
	if err != nil {
		t.Fatal(err)
	}
	lineOf := func(out, id string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, id) {
				return l
			}
		}
		return ""
	}
	for id, want := range map[string][]string{
		dead:    {"sandbox_teardown", "dead", "sb-dead", "gave up after 20 re-sends; last error: daytona: HTTP 500"},
		pending: {"sandbox_teardown", "pending", "sb-pending", "due", "re-send failed: sqs down"},
		work:    {"redis_work", "pending"},
	} {
		l := lineOf(out, id)
		for _, w := range want {
			if !strings.Contains(l, w) {
				t.Errorf("line of %s lacks %q: %q\n%s", id, w, l, out)
			}
		}
	}
	if strings.Contains(out, done) {
		t.Errorf("a done job is listed:\n%s", out)
	}
	if !strings.Contains(out, "3 pending/dead jobs") ||
		!strings.Contains(out, "not done, in all: redis_work pending 1, sandbox_teardown dead 1, sandbox_teardown pending 1") {
		t.Errorf("summary wrong:\n%s", out)
	}

	out, err = w.run("list", "-status", "dead", "-kind", "sandbox_teardown")
	if err != nil || lineOf(out, dead) == "" || lineOf(out, pending) != "" || lineOf(out, work) != "" {
		t.Fatalf("list -status dead: %v\n%s", err, out)
	}
	out, err = w.run("list", "-kind", "redis_work", "-limit", "1")
	if err != nil || lineOf(out, work) == "" || lineOf(out, dead) != "" {
		t.Fatalf("list -kind redis_work: %v\n%s", err, out)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"DATABASE_URL": "postgres://u@127.0.0.1:1/db", "SANDBOX_CLEANUP_QUEUE_URL": "http://127.0.0.1:1/q"}
	tests := []struct {
		args []string
		want string // in the error
	}{
		{nil, "no command"},
		{[]string{"purge"}, `unknown command "purge"`},
		{[]string{"requeue"}, "job ids or -all"},
		{[]string{"requeue", "-all", "0b7c1e5a-1111-4222-8333-444455556666"}, "job ids or -all"},
		{[]string{"list", "-status", "gone"}, "-status must be"},
		{[]string{"list", "-kind", "email"}, "-kind must be"},
		{[]string{"list", "-limit", "0"}, "-limit must be"},
		{[]string{"list", "extra"}, "takes no arguments"},
		{[]string{"redrive", "-max", "x"}, "invalid value"},
	}
	for _, tc := range tests {
		err := run(context.Background(), tc.args, env{vars: config.Map(vars), out: &bytes.Buffer{}})
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error with %q", tc.args, err, tc.want)
		}
	}
	// Missing settings are named.
	for args, want := range map[string]string{"redrive": "SANDBOX_CLEANUP_DLQ_URL", "list": "DATABASE_URL"} {
		err := run(context.Background(), []string{args}, env{vars: config.Map(map[string]string{"SANDBOX_CLEANUP_QUEUE_URL": "http://q"}), out: &bytes.Buffer{}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s without %s: %v", args, want, err)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
