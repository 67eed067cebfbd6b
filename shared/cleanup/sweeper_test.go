package cleanup_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/testenv"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		policy cleanup.DuePolicy
		sends  int
		want   time.Duration
	}{
		{cleanup.DuePolicy{ResendAfter: 5 * time.Minute, MaxBackoff: time.Hour}, 0, 5 * time.Minute},
		{cleanup.DuePolicy{ResendAfter: 5 * time.Minute, MaxBackoff: time.Hour}, 1, 10 * time.Minute},
		{cleanup.DuePolicy{ResendAfter: 5 * time.Minute, MaxBackoff: time.Hour}, 3, 40 * time.Minute},
		{cleanup.DuePolicy{ResendAfter: 5 * time.Minute, MaxBackoff: time.Hour}, 4, time.Hour},
		{cleanup.DuePolicy{ResendAfter: 5 * time.Minute, MaxBackoff: time.Hour}, 1000, time.Hour},
		{cleanup.DuePolicy{ResendAfter: 2 * time.Hour, MaxBackoff: time.Hour}, 3, 2 * time.Hour}, // never below ResendAfter
	}
	for _, tc := range tests {
		if got := tc.policy.Backoff(tc.sends); got != tc.want {
			t.Errorf("Backoff(%d) with %+v = %s, want %s", tc.sends, tc.policy, got, tc.want)
		}
	}
	p := (&cleanup.Sweeper{}).Policy()
	if p.ResendAfter != 5*time.Minute || p.MaxBackoff != time.Hour || p.MaxSends != 20 {
		t.Fatalf("defaults %+v", p)
	}
}

// sweepWorld adds a real SQS queue (fauxqs) to the world.
type sweepWorld struct {
	*world
	queueURL string
	client   *awssqs.Client
	sweeper  *cleanup.Sweeper
}

func newSweepWorld(t *testing.T) *sweepWorld {
	w := newWorld(t)
	ep := testenv.SQS(t)
	queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)
	client := testenv.SQSClient(ep)
	return &sweepWorld{
		world:    w,
		queueURL: queueURL,
		client:   client,
		sweeper: &cleanup.Sweeper{
			Outbox: w.store, Queue: &sqs.Publisher{Client: client, QueueURL: queueURL},
			Log: quiet(), ResendAfter: 5 * time.Minute,
		},
	}
}

// drain receives every message on the queue and returns their job ids.
func (s *sweepWorld) drain() []string {
	s.TB.Helper()
	var ids []string
	for {
		out, err := s.client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(s.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		if err != nil {
			s.TB.Fatal(err)
		}
		if len(out.Messages) == 0 {
			slices.Sort(ids)
			return ids
		}
		for _, m := range out.Messages {
			msg, err := sqs.Parse([]byte(aws.ToString(m.Body)))
			if err != nil {
				s.TB.Fatalf("sweeper sent an invalid message: %v", err)
			}
			ids = append(ids, msg.JobID)
			s.client.DeleteMessage(context.Background(), &awssqs.DeleteMessageInput{QueueUrl: aws.String(s.queueURL), ReceiptHandle: m.ReceiptHandle}) //nolint:errcheck
		}
	}
}

func (s *sweepWorld) sends(id string) (sends int, wait time.Duration) {
	s.TB.Helper()
	if err := s.Pool.QueryRow(context.Background(),
		`SELECT sends, next_attempt_at - now() FROM thread_delete.outbox WHERE id = $1`, id).Scan(&sends, &wait); err != nil {
		s.TB.Fatal(err)
	}
	return
}

func TestSweepResendsOverdueRowsOnly(t *testing.T) {
	t.Parallel()
	s := newSweepWorld(t)
	ctx := context.Background()

	fresh, _, _ := s.sandbox(false) // delete-thread just sent it
	overdue, _, _ := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '6 minutes', next_attempt_at = now() - interval '6 minutes' WHERE id = $1`, overdue)
	repair := s.outboxRow(cleanup.KindCacheRepair, threads.Invalidation{Key: "k", AccountID: testenv.NewUUID()})
	s.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '10 minutes' WHERE id = $1`, repair)
	done, _, _ := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET status = 'done', next_attempt_at = now() - interval '1 hour' WHERE id = $1`, done)
	exhausted, _, _ := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET sends = 20, next_attempt_at = now() - interval '1 second', last_error = 'daytona: HTTP 500' WHERE id = $1`, exhausted)

	rep, err := s.sweeper.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (cleanup.SweepReport{Resent: 2, Dead: 1}) {
		t.Fatalf("report %+v", rep)
	}
	want := []string{overdue, repair}
	slices.Sort(want)
	if got := s.drain(); !slices.Equal(got, want) {
		t.Fatalf("queue got %v, want %v", got, want)
	}
	if sends, wait := s.sends(overdue); sends != 1 || wait < 9*time.Minute || wait > 10*time.Minute {
		t.Fatalf("after the first re-send: sends %d, next in %s (want 1, 10m)", sends, wait)
	}
	if sends, _ := s.sends(fresh); sends != 0 {
		t.Fatal("fresh row re-sent")
	}
	if r := s.row(exhausted); r.Status != "dead" || !strings.Contains(r.LastError, "gave up after 20 re-sends") {
		t.Fatalf("exhausted row %+v", r)
	}

	// The backoff holds: an immediate second sweep sends nothing.
	if rep, _ := s.sweeper.Sweep(ctx); rep != (cleanup.SweepReport{}) {
		t.Fatalf("second sweep %+v", rep)
	}
	// Once the backoff has passed the row goes again, with a doubled wait.
	s.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '1 second' WHERE id = $1`, overdue)
	if rep, _ := s.sweeper.Sweep(ctx); rep.Resent != 1 {
		t.Fatalf("third sweep %+v", rep)
	}
	if sends, wait := s.sends(overdue); sends != 2 || wait < 19*time.Minute || wait > 20*time.Minute {
		t.Fatalf("after the second re-send: sends %d, next in %s (want 2, 20m)", sends, wait)
	}
	if got := s.drain(); !slices.Equal(got, []string{overdue}) {
		t.Fatalf("queue got %v", got)
	}
}

// A re-sent message is handled by the worker like the original.
func TestSweptTeardownIsCompleted(t *testing.T) {
	t.Parallel()
	s := newSweepWorld(t)
	jobID, sandboxID, resourceID := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '1 hour' WHERE id = $1`, jobID)
	if _, err := s.sweeper.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	ids := s.drain()
	if len(ids) != 1 {
		t.Fatalf("queue got %v", ids)
	}
	if failed := s.worker.Handle(context.Background(), []cleanup.Job{job("m", ids[0])}); len(failed) != 0 {
		t.Fatalf("failed %v", failed)
	}
	if s.daytona.Exists(sandboxID) || s.resourceStatus(resourceID) != "deleted" || s.row(jobID).Status != "done" {
		t.Fatal("re-sent teardown not completed")
	}
}

func TestSweepFailedSendLeavesRowPending(t *testing.T) {
	t.Parallel()
	s := newSweepWorld(t)
	id, _, _ := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '1 hour' WHERE id = $1`, id)
	down := *s.sweeper
	down.Queue = &sqs.Publisher{Client: testenv.SQSClient("http://127.0.0.1:1"), QueueURL: "http://127.0.0.1:1/000000000000/q"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	rep, err := down.Sweep(ctx)
	if err != nil || rep != (cleanup.SweepReport{Failed: 1}) {
		t.Fatalf("report %+v, %v", rep, err)
	}
	if r := s.row(id); r.Status != "pending" || !strings.Contains(r.LastError, "re-send failed") {
		t.Fatalf("row %+v", r)
	}
	if sends, wait := s.sends(id); sends != 0 || wait > 0 {
		t.Fatalf("failed re-send counted: sends %d, next in %s", sends, wait)
	}
	// The queue is back: the next sweep sends it.
	if rep, _ := s.sweeper.Sweep(context.Background()); rep.Resent != 1 {
		t.Fatalf("after recovery %+v", rep)
	}
	if got := s.drain(); !slices.Equal(got, []string{id}) {
		t.Fatalf("queue got %v", got)
	}
}

func TestSweepWorksInBoundedBatches(t *testing.T) {
	t.Parallel()
	s := newSweepWorld(t)
	s.Exec(`INSERT INTO thread_delete.outbox (kind, payload, next_attempt_at)
		SELECT 'cache_repair', '{"key":"k","account_id":"a","thread_ids":[]}', now() - interval '1 hour'
		FROM generate_series(1, 25)`)
	bounded := *s.sweeper
	bounded.BatchSize, bounded.MaxBatches = 10, 2
	rep, err := bounded.Sweep(context.Background())
	if err != nil || rep.Resent != 20 {
		t.Fatalf("bounded sweep %+v %v, want 20 re-sent", rep, err)
	}
	rep, _ = bounded.Sweep(context.Background())
	if rep.Resent != 5 {
		t.Fatalf("next sweep %+v, want the remaining 5", rep)
	}
	if n := len(s.drain()); n != 25 {
		t.Fatalf("queue got %d messages", n)
	}
}
