package cleanup_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
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
	// Redis work is completed in place, never re-sent (and this sweeper
	// has no cache: it stays pending).
	repair := s.outboxRow(cleanup.KindCacheRepair, legacyRepair{Key: "k", AccountID: testenv.NewUUID()})
	work := s.outboxRow(cleanup.KindRedisWork, threads.CacheWork{ThreadIDs: []string{testenv.NewUUID()}})
	s.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '10 minutes', next_attempt_at = now() - interval '10 minutes' WHERE id = ANY($1::uuid[])`,
		[]string{repair, work})
	done, _, _ := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET status = 'done', next_attempt_at = now() - interval '1 hour' WHERE id = $1`, done)
	exhausted, _, _ := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET sends = 20, next_attempt_at = now() - interval '1 second', last_error = 'daytona: HTTP 500' WHERE id = $1`, exhausted)

	rep, err := s.sweeper.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (cleanup.SweepReport{Resent: 1, Dead: 1}) {
		t.Fatalf("report %+v", rep)
	}
	if got := s.drain(); !slices.Equal(got, []string{overdue}) {
		t.Fatalf("queue got %v, want [%s]", got, overdue)
	}
	for _, id := range []string{repair, work} {
		if r := s.row(id); r.Status != "pending" || r.Attempts != 0 {
			t.Fatalf("redis work row touched by a sweeper without a cache: %+v", r)
		}
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
		SELECT 'sandbox_teardown', jsonb_build_object('sandbox_id', 'sb-' || i), now() - interval '1 hour'
		FROM generate_series(1, 25) i`)
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

// cacheSweep is a sweepWorld whose sweeper completes Redis work in a real
// Redis, with the default grace.
type cacheSweep struct {
	*sweepWorld
	cache *redis.Cache
	rdb   *goredis.Client
}

func newCacheSweep(t *testing.T) *cacheSweep {
	t.Helper()
	s := newSweepWorld(t)
	url, rdb := testenv.Redis(t)
	client, err := redis.NewClient(redis.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c := &cacheSweep{sweepWorld: s, cache: &redis.Cache{Client: client}, rdb: rdb}
	c.sweeper.Cache = c.cache
	return c
}

// pendingWork records a delete's Redis work as the delete function does (a
// redis_work row) and seeds the keys it concerns: the account had 10
// threads and 3 projects and lost 2 and 1; one of its agent runs was
// running.
func (c *cacheSweep) pendingWork() threads.CacheWork {
	c.TB.Helper()
	w := threads.CacheWork{
		Accounts:   []threads.AccountDelta{{AccountID: testenv.NewUUID(), Threads: 2, Projects: 1}},
		ThreadIDs:  []string{testenv.NewUUID(), testenv.NewUUID()},
		ProjectIDs: []string{testenv.NewUUID()},
		StopRuns:   []string{testenv.NewUUID()},
	}
	w.ID = c.outboxRow(cleanup.KindRedisWork, w)
	c.seed(w)
	return w
}

// seed sets the counters (10 threads, 3 projects) and cached keys of w.
func (c *cacheSweep) seed(w threads.CacheWork) {
	c.TB.Helper()
	ctx := context.Background()
	for _, a := range w.Accounts {
		c.rdb.Set(ctx, "thread_count:"+a.AccountID, "10", 0)
		c.rdb.Set(ctx, "project_count:"+a.AccountID, "3", 0)
		c.rdb.Set(ctx, "cache:account_state:"+a.AccountID, "{}", 0)
	}
	for _, id := range w.ThreadIDs {
		c.rdb.Set(ctx, "message_history:"+id, "[]", 0)
	}
	for _, id := range w.ProjectIDs {
		c.rdb.Set(ctx, "project_meta:"+id, "{}", 0)
	}
}

// state returns thread_count and project_count of w's first account ("" =
// absent) and how many of its cached keys are left.
func (c *cacheSweep) state(w threads.CacheWork) (threadCount, projectCount string, cached int64) {
	c.TB.Helper()
	ctx := context.Background()
	a := w.Accounts[0].AccountID
	keys := []string{"cache:account_state:" + a}
	for _, id := range w.ThreadIDs {
		keys = append(keys, "message_history:"+id)
	}
	for _, id := range w.ProjectIDs {
		keys = append(keys, "project_meta:"+id)
	}
	get := func(k string) string {
		v, err := c.rdb.Get(ctx, k).Result()
		if errors.Is(err, goredis.Nil) {
			return ""
		}
		if err != nil {
			c.TB.Fatal(err)
		}
		return v
	}
	return get("thread_count:" + a), get("project_count:" + a), c.rdb.Exists(ctx, keys...).Val()
}

// age makes rows older than the default grace.
func (c *cacheSweep) age(ids ...string) {
	c.TB.Helper()
	c.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '2 minutes' WHERE id = ANY($1::uuid[])`, ids)
}

// nextIn returns how long until the row is due again.
func (c *cacheSweep) nextIn(id string) time.Duration {
	_, wait := c.sends(id)
	return wait
}

// stops subscribes to the control channels of runs and returns a function
// that reports the messages received since, per run. It publishes a
// sentinel on a channel of its own and reads up to it: Redis delivers a
// subscriber's messages in the order they were published.
func (c *cacheSweep) stops(runs ...string) func() map[string][]string {
	c.TB.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sentinel := "test:sentinel:" + testenv.NewUUID()
	channels := []string{sentinel}
	for _, r := range runs {
		channels = append(channels, redis.ControlChannel(r))
	}
	ps := c.rdb.Subscribe(ctx, channels...)
	c.TB.Cleanup(func() { ps.Close() })
	for range channels {
		if msg, err := ps.Receive(ctx); err != nil {
			c.TB.Fatal(err)
		} else if _, ok := msg.(*goredis.Subscription); !ok {
			c.TB.Fatalf("subscribe: got %T", msg)
		}
	}
	return func() map[string][]string {
		c.TB.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c.rdb.Publish(ctx, sentinel, "sentinel")
		got := map[string][]string{}
		for {
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				c.TB.Fatalf("receive: %v (so far %v)", err, got)
			}
			if msg.Channel == sentinel {
				return got
			}
			got[msg.Channel] = append(got[msg.Channel], msg.Payload)
		}
	}
}

// The sweeper completes every delete's Redis work once the grace has
// passed: work applied inline (its marker present) is marked done without
// touching Redis; work that was not is applied in the repair form; a legacy
// cache_repair row is completed the same way; a row too young is left to
// the inline application; a row that cannot be read is given up on.
func TestSweepCompletesRedisWork(t *testing.T) {
	t.Parallel()
	c := newCacheSweep(t)
	ctx := context.Background()

	applied := c.pendingWork()
	if err := c.cache.Apply(ctx, applied); err != nil { // as delete-thread does after the commit
		t.Fatal(err)
	}
	// Kortix then rebuilt the counter and the account state.
	c.rdb.Set(ctx, "thread_count:"+applied.Accounts[0].AccountID, "7", 0)
	c.rdb.Set(ctx, "cache:account_state:"+applied.Accounts[0].AccountID, "{}", 0)
	unapplied := c.pendingWork() // Redis was down, or the function was killed after the commit
	young := c.pendingWork()     // the inline application may still be under way

	inv := legacyRepair{Key: testenv.NewUUID(), AccountID: testenv.NewUUID(), ProjectID: testenv.NewUUID(),
		ThreadIDs: []string{testenv.NewUUID()}, ProjectDeleted: true}
	legacy := threads.CacheWork{Accounts: []threads.AccountDelta{{AccountID: inv.AccountID}}, ThreadIDs: inv.ThreadIDs, ProjectIDs: []string{inv.ProjectID}}
	legacy.ID = c.outboxRow(cleanup.KindCacheRepair, inv)
	c.seed(legacy)

	garbled := c.outboxRow(cleanup.KindRedisWork, map[string]any{"accounts": "all of them"})
	empty := c.outboxRow(cleanup.KindRedisWork, threads.CacheWork{})
	c.age(applied.ID, unapplied.ID, legacy.ID, garbled, empty)
	stops := c.stops(applied.StopRuns[0], unapplied.StopRuns[0], young.StopRuns[0])

	rep, err := c.sweeper.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (cleanup.SweepReport{CacheDone: 3, CacheFailed: 2}) {
		t.Fatalf("report %+v", rep)
	}
	for _, id := range []string{applied.ID, unapplied.ID, legacy.ID} {
		if r := c.row(id); r.Status != "done" || r.Attempts != 1 {
			t.Errorf("row %s: %+v, want done after 1 attempt", id, r)
		}
	}
	if tc, pc, cached := c.state(applied); tc != "7" || pc != "2" || cached != 1 {
		t.Errorf("applied work touched again: thread_count %q, project_count %q, %d cached keys (want 7, 2, the rebuilt account state)", tc, pc, cached)
	}
	if tc, pc, cached := c.state(unapplied); tc != "" || pc != "" || cached != 0 {
		t.Errorf("unapplied work: thread_count %q, project_count %q, %d cached keys; want all deleted", tc, pc, cached)
	}
	if tc, pc, cached := c.state(legacy); tc != "" || pc != "" || cached != 0 {
		t.Errorf("legacy repair: thread_count %q, project_count %q, %d cached keys; want all deleted", tc, pc, cached)
	}
	if got, want := stops(), map[string][]string{redis.ControlChannel(unapplied.StopRuns[0]): {redis.StopSignal}}; !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("stop signals %v, want %v", got, want)
	}
	if r := c.row(young.ID); r.Status != "pending" || r.Attempts != 0 {
		t.Errorf("young row %+v, want pending and untried", r)
	}
	if tc, pc, cached := c.state(young); tc != "10" || pc != "3" || cached != 4 {
		t.Errorf("young work applied early: thread_count %q, project_count %q, %d cached keys", tc, pc, cached)
	}
	for _, tc := range []struct{ id, cause string }{{garbled, "redis work payload"}, {empty, "names no account"}} {
		if r := c.row(tc.id); r.Status != "dead" || !strings.Contains(r.LastError, tc.cause) {
			t.Errorf("unusable row %+v, want dead with %q", r, tc.cause)
		}
	}

	// Nothing more is due; once the grace has passed, the young row is
	// completed too.
	if rep, err := c.sweeper.Sweep(ctx); err != nil || rep != (cleanup.SweepReport{}) {
		t.Fatalf("second sweep %+v %v", rep, err)
	}
	c.age(young.ID)
	if rep, err := c.sweeper.Sweep(ctx); err != nil || rep != (cleanup.SweepReport{CacheDone: 1}) {
		t.Fatalf("third sweep %+v %v", rep, err)
	}
	if tc, _, cached := c.state(young); c.row(young.ID).Status != "done" || tc != "" || cached != 0 {
		t.Fatalf("young row %+v, thread_count %q, %d cached keys", c.row(young.ID), tc, cached)
	}
	if got := stops(); len(got) != 1 || len(got[redis.ControlChannel(young.StopRuns[0])]) != 1 {
		t.Fatalf("stop signals %v, want one for the young row's run", got)
	}
}

// While Redis is down the rows stay pending (never dead), each failed
// attempt recorded and backed off; once Redis is back they are completed.
func TestSweepRedisDown(t *testing.T) {
	t.Parallel()
	c := newCacheSweep(t)
	ctx := context.Background()
	w1, w2 := c.pendingWork(), c.pendingWork()
	c.age(w1.ID, w2.ID)

	dead, err := redis.NewClient(redis.Options{URL: "redis://127.0.0.1:1/0", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	down := *c.sweeper
	down.Cache = &redis.Cache{Client: dead}

	for attempt, backoff := range []time.Duration{time.Minute, 2 * time.Minute} {
		rep, err := down.Sweep(ctx)
		if err != nil || rep != (cleanup.SweepReport{CacheFailed: 2}) {
			t.Fatalf("attempt %d: report %+v, %v", attempt+1, rep, err)
		}
		for _, id := range []string{w1.ID, w2.ID} {
			if r := c.row(id); r.Status != "pending" || r.Attempts != attempt+1 || !strings.HasPrefix(r.LastError, "redis: ") {
				t.Fatalf("attempt %d: row %+v, want pending with %d attempts and a redis error", attempt+1, r, attempt+1)
			}
			if wait := c.nextIn(id); wait < backoff-5*time.Second || wait > backoff {
				t.Fatalf("attempt %d: next attempt in %s, want %s", attempt+1, wait, backoff)
			}
		}
		// Backed off: an immediate sweep leaves the rows alone.
		if rep, err := down.Sweep(ctx); err != nil || rep != (cleanup.SweepReport{}) {
			t.Fatalf("attempt %d: sweep during the backoff %+v %v", attempt+1, rep, err)
		}
		c.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '1 second' WHERE id = ANY($1::uuid[])`, []string{w1.ID, w2.ID})
	}
	if tc, _, cached := c.state(w1); tc != "10" || cached != 4 {
		t.Fatal("Redis changed while it was unreachable")
	}

	rep, err := c.sweeper.Sweep(ctx)
	if err != nil || rep != (cleanup.SweepReport{CacheDone: 2}) {
		t.Fatalf("after recovery: report %+v, %v", rep, err)
	}
	for _, w := range []threads.CacheWork{w1, w2} {
		if tc, pc, cached := c.state(w); c.row(w.ID).Status != "done" || tc != "" || pc != "" || cached != 0 {
			t.Fatalf("after recovery: row %+v, thread_count %q, project_count %q, %d cached keys", c.row(w.ID), tc, pc, cached)
		}
	}
}

func TestSweepRedisWorkInBoundedBatches(t *testing.T) {
	t.Parallel()
	c := newCacheSweep(t)
	c.Exec(`INSERT INTO thread_delete.outbox (kind, payload, created_at)
		SELECT 'redis_work', jsonb_build_object('thread_ids', jsonb_build_array(gen_random_uuid())), now() - interval '2 minutes'
		FROM generate_series(1, 25)`)
	bounded := *c.sweeper
	bounded.CacheBatchSize, bounded.MaxBatches = 10, 2
	rep, err := bounded.Sweep(context.Background())
	if err != nil || rep != (cleanup.SweepReport{CacheDone: 20}) {
		t.Fatalf("bounded sweep %+v %v, want 20 done", rep, err)
	}
	if rep, _ := bounded.Sweep(context.Background()); rep != (cleanup.SweepReport{CacheDone: 5}) {
		t.Fatalf("next sweep %+v, want the remaining 5", rep)
	}
	if n := c.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'redis_work' AND status = 'done'`); n != 25 {
		t.Fatalf("%d of 25 rows done", n)
	}
}
