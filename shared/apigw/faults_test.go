package apigw_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Fault tests beyond those in apigw_test.go (Redis refused, queue missing,
// database refused, connection cut mid-request, deadline already too close):
// dependencies that do not fail but stop answering, which only the service's
// own time bounds can turn into a clean answer.

// lambdaDeadline is the function's timeout in template.yaml.
const lambdaDeadline = 10 * time.Second

func (s *stack) deleter() *threads.Deleter { return s.handler.Deleter.(*threads.Deleter) }

// useDatabaseVia points the handler's store at the test database through
// bh, with a pool of its own.
func (s *stack) useDatabaseVia(t *testing.T, bh *testenv.Blackhole) {
	t.Helper()
	pool := testenv.ServicePool(t, testenv.ViaAddr(s.Pool.Config().ConnString(), bh.Addr), 2)
	// Cleanups run last-in first-out: closing the black hole first ends
	// pgx's background cancel requests into it, which Close would wait for.
	t.Cleanup(bh.Close)
	s.deleter().Store = &postgres.Store{Pool: pool}
}

// deleteWithin calls the handler with a deadline d away and returns the
// response and how long it took.
func (s *stack) deleteWithin(t *testing.T, d time.Duration, threadID string, headers map[string]string) (events.APIGatewayV2HTTPResponse, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	ev := event(t, threadID, headers)
	start := time.Now()
	resp, err := s.handler.Handle(ctx, ev)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("handler returned an error: %v", err)
	}
	return resp, took
}

// redisDump returns every key of the test's Redis database with its value.
func (s *stack) redisDump(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := s.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		v, err := s.rdb.Get(ctx, k).Result()
		if err != nil {
			t.Fatalf("GET %s: %v", k, err)
		}
		out[k] = v
	}
	return out
}

// expectUnchanged asserts that the database and Redis are as before.
func (s *stack) expectUnchanged(t *testing.T, db map[string]int, rd map[string]string) {
	t.Helper()
	if after := s.Snapshot(); !maps.Equal(db, after) {
		t.Fatalf("the database changed:\nbefore %v\nafter  %v", db, after)
	}
	if after := s.redisDump(t); !maps.Equal(rd, after) {
		t.Fatalf("Redis changed:\nbefore %v\nafter  %v", rd, after)
	}
}

func expect503(t *testing.T, resp events.APIGatewayV2HTTPResponse) {
	t.Helper()
	expect(t, resp, 503, nil)
	if resp.Headers["Retry-After"] == "" {
		t.Fatalf("503 without Retry-After: %v", resp.Headers)
	}
}

func TestDatabaseBlackholedIs503BeforeTheDeadline(t *testing.T) {
	tests := []struct {
		name     string
		warm     bool          // a pooled connection exists before the outage
		deadline time.Duration // left of the invocation when the request starts
		within   time.Duration // the answer must come before this
	}{
		// A host that takes the TCP connection but never speaks: the
		// connect timeout (3s) ends it, well before the Lambda deadline.
		{"new connection hangs", false, lambdaDeadline, lambdaDeadline / 2},
		// The pooled connection's peer vanished (failover): the batch goes
		// out and nothing comes back. Only the deadline bounds it, and the
		// answer must still beat the deadline.
		{"open connection stops answering", true, 2 * time.Second, 2 * time.Second},
		{"open connection stops answering, full deadline", true, lambdaDeadline, lambdaDeadline},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.deadline == lambdaDeadline && tc.warm && testing.Short() {
				t.Skip("takes the whole deadline")
			}
			s := newStack(t, stackOptions{})
			bh := testenv.StartBlackhole(t, testenv.PostgresAddr())
			s.useDatabaseVia(t, bh)
			owner := s.PersonalAccount()
			p := s.Project(owner, s.Sandbox(owner, "sb-bh"), "")
			th := s.Thread(owner, p, "")
			s.Content(th, 3, 1, 1)
			s.rdb.Set(context.Background(), "thread_count:"+owner, "1", 0)
			if tc.warm {
				expect(t, s.delete(t, testenv.NewUUID(), bearer(owner)), 404, nil)
			}
			db, rd := s.Snapshot(), s.redisDump(t)

			bh.Swallow(true)
			resp, took := s.deleteWithin(t, tc.deadline, th, bearer(owner))
			expect503(t, resp)
			if took >= tc.within {
				t.Fatalf("503 after %v, want it within %v (deadline %v)", took, tc.within, tc.deadline)
			}
			s.expectUnchanged(t, db, rd)
			if msgs := s.receive(t, 0); len(msgs) != 0 {
				t.Fatalf("a failed request queued work: %v", msgs)
			}

			// The outage ends: the same handler recovers on a fresh
			// connection and the retry succeeds.
			bh.Swallow(false)
			expect(t, s.delete(t, th, bearer(owner)), 200, nil)
			if s.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p) != 0 {
				t.Fatal("retry after the outage did not delete the project")
			}
		})
	}
}

// A delete stuck behind another transaction's lock when the deadline comes
// must answer 503 in time, and must not take effect later when the lock is
// released: a 503 promises that nothing changed.
func TestLockWaitPastTheDeadlineIs503AndNeverCommitsLater(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	tests := []struct {
		deadline   time.Duration
		cancelLost bool // pgx's asynchronous cancel request never arrives (frozen Lambda, proxy)
	}{
		{400 * time.Millisecond, false},
		{time.Second, false},
		{2 * time.Second, false},
		{time.Second, true},
	}
	for _, tc := range tests {
		deadline := tc.deadline
		name := deadline.String()
		if tc.cancelLost {
			name += " cancel request lost"
		}
		t.Run(name, func(t *testing.T) {
			s.pgProxy.Refuse(false)
			owner := s.PersonalAccount()
			p := s.Project(owner, s.Sandbox(owner, "sb-lock"), "")
			th := s.Thread(owner, p, "")
			s.Content(th, 3, 1, 1)
			db, rd := s.Snapshot(), s.redisDump(t)

			// Another writer holds the project (as a thread insert does).
			holder, err := s.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Rollback(ctx) //nolint:errcheck
			if _, err := holder.Exec(ctx, `SELECT 1 FROM public.projects WHERE project_id = $1 FOR KEY SHARE`, p); err != nil {
				t.Fatal(err)
			}
			if tc.cancelLost {
				// Open the pool's connection, then let no new one through:
				// pgx sends its cancel request on a new connection.
				expect(t, s.delete(t, testenv.NewUUID(), bearer(owner)), 404, nil)
				s.pgProxy.Refuse(true)
			}
			resp, took := s.deleteWithin(t, deadline, th, bearer(owner))
			expect503(t, resp)
			if took >= deadline {
				t.Fatalf("503 after %v, want it before the %v deadline", took, deadline)
			}
			if err := holder.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			// With the lock free, an abandoned delete would run on and
			// commit: wait until no backend of the service is busy in
			// this database, so that whatever it could do is done.
			s.WaitServiceIdle()
			s.expectUnchanged(t, db, rd)
		})
	}
}

// Redis that accepts but answers slower than the follow-up bound: the
// response is still a 200 within the deadline, the work stays recorded, and
// completing it after the slow command landed leaves the counters exactly
// one delete lower.
func TestRedisSlowSucceedsWithinTheDeadlineAndTheRepairIsExact(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner := s.PersonalAccount()
	p := s.Project(owner, "", "")
	warm, th := s.Thread(owner, p, ""), s.Thread(owner, p, "")
	child := s.Thread(owner, p, th)
	s.rdb.Set(ctx, "thread_count:"+owner, "10", 0)
	s.rdb.Set(ctx, "message_history:"+th, "[]", 0)
	s.rdb.Set(ctx, "message_history:"+child, "[]", 0)
	s.rdb.Set(ctx, "cache:account_state:"+owner, "{}", 0)
	// A first delete warms the Redis connection, so that the slow command
	// below is a real EVAL sent on an open connection.
	expect(t, s.delete(t, warm, bearer(owner)), 200, nil)
	if got := s.rdb.Get(ctx, "thread_count:"+owner).Val(); got != "9" {
		t.Fatalf("thread_count = %s after the warm-up delete", got)
	}

	const delay = 2 * time.Second
	if delay <= s.deleter().FollowUpTimeout {
		t.Fatal("the delay must exceed the follow-up bound")
	}
	s.rdProxy.SetDelay(delay)
	resp, took := s.deleteWithin(t, lambdaDeadline, th, bearer(owner))
	expect(t, resp, 200, nil)
	if took > lambdaDeadline/2 {
		t.Fatalf("200 took %v with Redis slow", took)
	}
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = ANY($1::uuid[])`, []string{th, child}) != 0 {
		t.Fatal("threads not deleted")
	}
	// The work was recorded with the delete, whatever happened inline.
	var workID string
	if err := s.Pool.QueryRow(ctx, `SELECT id::text FROM thread_delete.outbox
		WHERE kind = 'redis_work' AND status = 'pending' AND payload->'thread_ids' ? $1`, th).Scan(&workID); err != nil {
		t.Fatalf("no redis work recorded: %v", err)
	}

	// The slow EVAL is still held by the proxy after the client gave up on
	// it: wait until every held flight went through and Redis applied it
	// (its marker is set), then complete the work twice, as the sweeper
	// would on a second pass. The marker makes both a no-op: no counter
	// goes down twice.
	testenv.WaitFor(t, 10*time.Second, "the slow EVAL to land", func() bool {
		return s.rdProxy.Held() == 0 && s.rdb.Exists(ctx, redis.MarkerKey(workID)).Val() == 1
	})
	s.rdProxy.SetDelay(0)
	repair := &redis.Cache{Client: s.rdb}
	work := threads.CacheWork{ID: workID, Accounts: []threads.AccountDelta{{AccountID: owner, Threads: 2}}, ThreadIDs: []string{th, child}}
	for range 2 {
		if err := repair.Repair(ctx, []threads.CacheWork{work})[0]; err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{
		"thread_count:" + owner:        "7", // 10 - warm-up - the thread and its sub-agent thread
		"message_history:" + th:        "<absent>",
		"message_history:" + child:     "<absent>",
		"cache:account_state:" + owner: "<absent>",
	}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
}

// An SQS endpoint that takes the connection and never answers: the 200
// comes after the follow-up bound, and the teardown stays pending in the
// outbox for the sweeper; nothing is lost.
func TestQueueBlackholedSucceedsAndKeepsTheTeardownPending(t *testing.T) {
	s := newStack(t, stackOptions{})
	bh := testenv.StartBlackhole(t, "")
	s.deleter().Queue = &sqs.Publisher{Client: testenv.SQSClient("http://" + bh.Addr), QueueURL: s.queueURL}
	owner := s.PersonalAccount()
	th := s.Thread(owner, s.Project(owner, s.Sandbox(owner, "sb-bh-q"), ""), "")

	resp, took := s.deleteWithin(t, lambdaDeadline, th, bearer(owner))
	expect(t, resp, 200, nil)
	if took > lambdaDeadline/2 {
		t.Fatalf("200 took %v with the queue black-holed", took)
	}
	if bh.Accepted() == 0 {
		t.Fatal("the teardown was never sent to the black-holed queue")
	}
	if n := s.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'sandbox_teardown' AND status = 'pending' AND payload->>'sandbox_id' = 'sb-bh-q'`); n != 1 {
		t.Fatalf("%d pending teardowns, want 1", n)
	}
	if msgs := s.receive(t, 0); len(msgs) != 0 {
		t.Fatalf("queue = %v", msgs)
	}
}
