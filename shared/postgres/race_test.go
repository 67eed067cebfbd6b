package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// The race tests run real concurrent transactions against PostgreSQL. Each
// test function creates one database and one Store per goroutine (each with
// its own pool, so each goroutine has its own connection and backend), then
// seeds fresh rows for every round. Rounds are cheap, so that
//
//	go test -count=20 -run Race ./shared/postgres
//
// repeats every race a few hundred times in well under a minute.
//
// Two kinds of rounds are used: free-running races, released together from
// a barrier (which interleaving happens is up to the scheduler), and forced
// interleavings, where a third transaction holds a lock so that one side
// provably waits for the other; the forced ones make sure every branch of
// the outcome is exercised on every run, not just the likely one.

// raceRounds is how many free-running rounds each race test runs per
// invocation.
const raceRounds = 5

// raceWorld is one test database with n independent Stores.
type raceWorld struct {
	testenv.Seeder
	url    string
	stores []*postgres.Store
}

func newRaceWorld(t *testing.T, n int) *raceWorld {
	t.Helper()
	url := testenv.Database(t)
	w := &raceWorld{Seeder: testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}, url: url}
	ctx := context.Background()
	for range n {
		pool := testenv.ServicePool(t, url, 1)
		// Connect now, so that rounds race on queries, not on connection setup.
		if err := pool.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		w.stores = append(w.stores, &postgres.Store{Pool: pool})
	}
	return w
}

// conn opens a connection of its own (a concurrent writer that is not the
// service), closed when the test ends.
func (w *raceWorld) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), w.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// waitForLockWaiters waits until n sessions of this database are blocked on
// a lock: the proof that a forced interleaving is in place.
func (w *raceWorld) waitForLockWaiters(t *testing.T, n int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%d sessions waiting on a lock", n), func() bool {
		return w.Count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) >= n
	})
}

// checkInvariants asserts what must hold after any mix of concurrent
// deletes and inserts: no orphan rows, no project left without threads (the
// last-thread race), message counters equal to the messages, and at most one
// teardown per project, only for projects that are gone.
func (w *raceWorld) checkInvariants(t *testing.T) {
	t.Helper()
	checks := []struct{ what, sql string }{
		{"projects left without any thread", `SELECT count(*) FROM public.projects p WHERE NOT EXISTS (SELECT 1 FROM public.threads t WHERE t.project_id = p.project_id)`},
		{"threads whose project is gone", `SELECT count(*) FROM public.threads t WHERE t.project_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM public.projects p WHERE p.project_id = t.project_id)`},
		{"messages whose thread is gone", `SELECT count(*) FROM public.messages m WHERE NOT EXISTS (SELECT 1 FROM public.threads t WHERE t.thread_id = m.thread_id)`},
		{"agent runs whose thread is gone", `SELECT count(*) FROM public.agent_runs r WHERE NOT EXISTS (SELECT 1 FROM public.threads t WHERE t.thread_id = r.thread_id)`},
		{"documents whose thread is gone", `SELECT count(*) FROM public.documents d WHERE NOT EXISTS (SELECT 1 FROM public.threads t WHERE t.thread_id = d.thread_id)`},
		{"threads whose message counters are wrong", `SELECT count(*) FROM public.threads t
			WHERE t.total_message_count <> (SELECT count(*) FROM public.messages m WHERE m.thread_id = t.thread_id)
			   OR t.user_message_count <> (SELECT count(*) FROM public.messages m WHERE m.thread_id = t.thread_id AND m.type = 'user')`},
		{"projects with more than one teardown", `SELECT count(*) FROM (SELECT payload->>'project_id' FROM thread_delete.outbox
			WHERE kind = 'sandbox_teardown' GROUP BY 1 HAVING count(*) > 1) x`},
		{"teardowns of projects that still exist", `SELECT count(*) FROM thread_delete.outbox o JOIN public.projects p
			ON p.project_id = (o.payload->>'project_id')::uuid WHERE o.kind = 'sandbox_teardown'`},
	}
	for _, c := range checks {
		if n := w.Count(c.sql); n != 0 {
			t.Errorf("%d %s", n, c.what)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func (w *raceWorld) threadExists(id string) bool {
	return w.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, id) == 1
}

func (w *raceWorld) projectExists(id string) bool {
	return w.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, id) == 1
}

func (w *raceWorld) teardowns(project string) int {
	return w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'sandbox_teardown' AND payload->>'project_id' = $1`, project)
}

// project is one seeded project: the owner, the project, its threads (roots
// first, then each root's sub-agent thread when there are any) and the
// sandbox id.
type project struct {
	owner, id, sandbox string
	roots, children    []string
}

func (p project) threads() []string { return append(slices.Clone(p.roots), p.children...) }

// seedProject creates a project with a sandbox and roots threads, each with
// content, and a sub-agent child under each of the first children roots.
func (w *raceWorld) seedProject(roots, children int) project {
	return w.seedProjectOf(w.PersonalAccount(), roots, children)
}

// seedProjectOf is seedProject for a given owning account.
func (w *raceWorld) seedProjectOf(owner string, roots, children int) project {
	sb := "sb-" + testenv.NewUUID()[:8]
	p := project{owner: owner, id: w.Project(owner, w.Sandbox(owner, sb), ""), sandbox: sb}
	for range roots {
		th := w.Thread(owner, p.id, "")
		w.Content(th, 2, 1, 1)
		p.roots = append(p.roots, th)
	}
	for i := range children {
		th := w.Thread(owner, p.id, p.roots[i])
		w.Content(th, 2, 1, 0)
		p.children = append(p.children, th)
	}
	return p
}

type deleteResult struct {
	threadID string
	del      threads.Deletion
	err      error
}

// raceDeletes deletes ids[i] through deleter i, all released at once, and
// returns the results in the order of ids.
func raceDeletes(ids []string, caller threads.Caller, deleters []func(context.Context, threads.Request) (threads.Deletion, error)) []deleteResult {
	out := make([]deleteResult, len(ids))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			<-start
			del, err := deleters[i](ctx, threads.Request{ThreadIDs: []string{id}, Caller: caller})
			out[i] = deleteResult{threadID: id, del: del, err: err}
		}()
	}
	close(start)
	wg.Wait()
	return out
}

func storeDeleters(stores []*postgres.Store) []func(context.Context, threads.Request) (threads.Deletion, error) {
	var fns []func(context.Context, threads.Request) (threads.Deletion, error)
	for _, s := range stores {
		fns = append(fns, s.Delete)
	}
	return fns
}

// checkAllGone asserts the outcome of deleting every thread of p at once:
// every thread removed exactly once (a sub-agent thread either by its own
// delete or with its parent, never both), no error (a deadlock would be
// one), exactly one delete took the project and recorded its one teardown.
func checkAllGone(t *testing.T, w *raceWorld, p project, results []deleteResult) {
	t.Helper()
	removedBy := map[string]string{}
	projectDeletions := 0
	for _, r := range results {
		if r.err != nil {
			t.Fatalf("delete %s: %v", r.threadID, r.err)
		}
		switch r.del.Outcome(r.threadID) {
		case threads.OutcomeDeleted:
		case threads.OutcomeNotFound:
			// Only a sub-agent thread may already be gone: with its parent.
			if !slices.Contains(p.children, r.threadID) {
				t.Fatalf("delete %s: not found, but nothing else deletes it", r.threadID)
			}
			continue
		default:
			t.Fatalf("delete %s: outcome %v", r.threadID, r.del.Outcome(r.threadID))
		}
		if !slices.Contains(r.del.Work.ThreadIDs, r.threadID) {
			t.Fatalf("delete %s reports threads %v", r.threadID, r.del.Work.ThreadIDs)
		}
		for _, id := range r.del.Work.ThreadIDs {
			if by, dup := removedBy[id]; dup {
				t.Fatalf("thread %s reported deleted twice (by %s and %s)", id, by, r.threadID)
			}
			removedBy[id] = r.threadID
		}
		if len(r.del.Work.ProjectIDs) > 0 {
			projectDeletions++
			if len(r.del.Teardowns) != 1 || r.del.Teardowns[0].SandboxID != p.sandbox || r.del.Teardowns[0].ProjectID != p.id {
				t.Fatalf("project deleted without its teardown: %+v", r.del.Teardowns)
			}
		} else if len(r.del.Teardowns) != 0 {
			t.Fatalf("teardowns %+v without project deletion", r.del.Teardowns)
		}
	}
	for _, id := range p.threads() {
		if _, ok := removedBy[id]; !ok {
			t.Fatalf("thread %s not reported deleted by anyone", id)
		}
	}
	if len(removedBy) != len(p.threads()) {
		t.Fatalf("%d threads reported deleted, want %d", len(removedBy), len(p.threads()))
	}
	if projectDeletions != 1 {
		t.Fatalf("%d deletes took the project, want exactly 1", projectDeletions)
	}
	if n := w.Count(`SELECT count(*) FROM public.threads WHERE thread_id = ANY($1::uuid[])`, p.threads()); n != 0 {
		t.Fatalf("%d threads survived", n)
	}
	if n := w.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p.id); n != 0 {
		t.Fatal("project survived the deletion of all its threads")
	}
	if n := w.teardowns(p.id); n != 1 {
		t.Fatalf("%d teardown rows for the project, want 1", n)
	}
	w.checkInvariants(t)
}

var shapes = []struct {
	name            string
	roots, children int
}{
	{"8 threads", 8, 0},
	{"4 threads each with a sub-agent thread", 4, 4},
}

func TestRaceDeleteEveryThreadOfAProject(t *testing.T) {
	w := newRaceWorld(t, 8)
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			for range raceRounds {
				p := w.seedProject(sh.roots, sh.children)
				results := raceDeletes(p.threads(), user(p.owner), storeDeleters(w.stores))
				checkAllGone(t, w, p, results)
			}
		})
	}
}

// recordingQueue is a threads.Queue that keeps what it was sent.
type recordingQueue struct {
	mu   sync.Mutex
	sent []threads.Teardown
}

func (q *recordingQueue) SendTeardowns(_ context.Context, ts []threads.Teardown) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sent = append(q.sent, ts...)
	return nil
}

func (q *recordingQueue) teardownsOf(project string) []threads.Teardown {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []threads.Teardown
	for _, td := range q.sent {
		if td.ProjectID == project {
			out = append(out, td)
		}
	}
	return out
}

// deleters builds one threads.Deleter per Store, sharing a Redis cache and a
// queue, as concurrent Lambda environments share ElastiCache and SQS.
func deleters(stores []*postgres.Store, cache threads.Cache, queue threads.Queue) []func(context.Context, threads.Request) (threads.Deletion, error) {
	var fns []func(context.Context, threads.Request) (threads.Deletion, error)
	for _, s := range stores {
		d := &threads.Deleter{Store: s, Cache: cache, Queue: queue, FollowUpTimeout: 5 * time.Second}
		fns = append(fns, func(ctx context.Context, req threads.Request) (threads.Deletion, error) {
			res, err := d.Delete(ctx, req)
			if err == nil && (res.CacheErr != nil || res.QueueErr != nil) {
				err = fmt.Errorf("follow-up failed: cache %v, queue %v", res.CacheErr, res.QueueErr)
			}
			return res.Deletion, err
		})
	}
	return fns
}

func TestRaceDeleterKeepsRedisCountersExact(t *testing.T) {
	w := newRaceWorld(t, 8)
	_, rdb := testenv.Redis(t)
	cache := &redis.Cache{Client: rdb}
	queue := &recordingQueue{}
	ctx := context.Background()
	for _, sh := range shapes {
		t.Run(sh.name, func(t *testing.T) {
			for range raceRounds {
				p := w.seedProject(sh.roots, sh.children)
				all := p.threads()
				// The account has 5 more threads and 2 more projects elsewhere.
				rdb.Set(ctx, "thread_count:"+p.owner, len(all)+5, 0)
				rdb.Set(ctx, "project_count:"+p.owner, 3, 0)
				rdb.Set(ctx, "cache:account_state:"+p.owner, "{}", 0)
				rdb.Set(ctx, "project_meta:"+p.id, "{}", 0)
				for _, th := range all {
					rdb.Set(ctx, "message_history:"+th, "[]", 0)
				}

				results := raceDeletes(all, user(p.owner), deleters(w.stores, cache, queue))
				checkAllGone(t, w, p, results)

				want := map[string]string{
					"thread_count:" + p.owner:        "5",
					"project_count:" + p.owner:       "2",
					"cache:account_state:" + p.owner: "<absent>",
					"project_meta:" + p.id:           "<absent>",
				}
				for _, th := range all {
					want["message_history:"+th] = "<absent>"
				}
				for k, v := range want {
					got, err := rdb.Get(ctx, k).Result()
					if errors.Is(err, goredis.Nil) {
						got = "<absent>"
					} else if err != nil {
						t.Fatal(err)
					}
					if got != v {
						t.Fatalf("%s = %s, want %s", k, got, v)
					}
				}
				sent := queue.teardownsOf(p.id)
				if len(sent) != 1 || sent[0].SandboxID != p.sandbox {
					t.Fatalf("queue got %+v, want exactly one teardown of %s", sent, p.sandbox)
				}
				if w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = $1 AND status = 'pending'`, sent[0].JobID) != 1 {
					t.Fatal("the queued teardown does not carry its outbox row's id")
				}
				if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'cache_repair'`); n != 0 {
					t.Fatalf("%d legacy cache repairs recorded", n)
				}
			}
		})
	}
}

func TestRaceSameThreadDeletedTwiceAtOnce(t *testing.T) {
	w := newRaceWorld(t, 2)
	_, rdb := testenv.Redis(t)
	queue := &recordingQueue{}
	ctx := context.Background()
	tests := []struct {
		name      string
		last      bool // the thread is its project's last
		noProject bool // the thread has no project: only its own row lock serialises the deletes
	}{
		{"not the project's last thread", false, false},
		{"the project's last thread", true, false},
		{"a thread without a project", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range raceRounds {
				p := w.seedProject(1, 0)
				th := p.roots[0]
				if !tc.last {
					p.roots = append(p.roots, w.Thread(p.owner, p.id, ""))
				}
				if tc.noProject {
					th = w.Thread(p.owner, "", "")
					w.Content(th, 3, 1, 1)
				}
				rdb.Set(ctx, "thread_count:"+p.owner, 4, 0)
				rdb.Set(ctx, "project_count:"+p.owner, 2, 0)

				results := raceDeletes([]string{th, th}, user(p.owner), deleters(w.stores, &redis.Cache{Client: rdb}, queue))
				var deleted, notFound int
				for _, r := range results {
					if r.err != nil {
						t.Fatal(r.err)
					}
					switch r.del.Outcome(th) {
					case threads.OutcomeDeleted:
						deleted++
						if got := len(r.del.Work.ProjectIDs) > 0; got != tc.last {
							t.Fatalf("project deleted = %v, want %v", got, tc.last)
						}
					case threads.OutcomeNotFound:
						notFound++
					}
				}
				if deleted != 1 || notFound != 1 {
					t.Fatalf("%d deleted and %d not found, want one of each", deleted, notFound)
				}
				wantThreads, wantProjects := "3", "2"
				wantTeardowns := 0
				if tc.last {
					wantProjects, wantTeardowns = "1", 1
				}
				if got := rdb.Get(ctx, "thread_count:"+p.owner).Val(); got != wantThreads {
					t.Fatalf("thread_count = %s, want %s", got, wantThreads)
				}
				if got := rdb.Get(ctx, "project_count:"+p.owner).Val(); got != wantProjects {
					t.Fatalf("project_count = %s, want %s", got, wantProjects)
				}
				if n := w.teardowns(p.id); n != wantTeardowns {
					t.Fatalf("%d teardown rows, want %d", n, wantTeardowns)
				}
				if n := len(queue.teardownsOf(p.id)); n != wantTeardowns {
					t.Fatalf("%d teardowns queued, want %d", n, wantTeardowns)
				}
				w.checkInvariants(t)
			}
		})
	}
}

// isFKViolation reports a foreign-key violation: the clean failure of an
// insert whose parent row was deleted first.
func isFKViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// insertThread inserts a thread into project through c (a transaction or a
// connection) and returns its id.
func insertThread(ctx context.Context, c interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, account, projectID string) (string, error) {
	id := testenv.NewUUID()
	_, err := c.Exec(ctx, `INSERT INTO public.threads (thread_id, account_id, project_id, name) VALUES ($1, $2, $3, 'racing')`, id, account, projectID)
	return id, err
}

func insertMessage(ctx context.Context, c interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, thread string) error {
	_, err := c.Exec(ctx, `INSERT INTO public.messages (thread_id, type, is_llm_message, content) VALUES ($1, 'user', false, '{"content": "racing"}')`, thread)
	return err
}

// lockAMessage holds a row lock on one message of thread in an open
// transaction: a delete of the thread then waits in the middle of its
// statement, after it has locked the project and the thread.
func lockAMessage(t *testing.T, c *pgx.Conn, thread string) pgx.Tx {
	t.Helper()
	tx, err := c.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), `SELECT 1 FROM public.messages WHERE thread_id = $1 LIMIT 1 FOR UPDATE`, thread); err != nil {
		t.Fatal(err)
	}
	return tx
}

func asyncDelete(s *postgres.Store, thread string, caller threads.Caller) <-chan deleteResult {
	ch := make(chan deleteResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		del, err := s.Delete(ctx, threads.Request{ThreadIDs: []string{thread}, Caller: caller})
		ch <- deleteResult{threadID: thread, del: del, err: err}
	}()
	return ch
}

// checkThreadInsertRace asserts the only two acceptable ends of a delete of
// a project's last thread racing an insert of a new thread into the project:
// the new thread survives with its project, or the insert failed cleanly
// and the project is gone with its one teardown.
func checkThreadInsertRace(t *testing.T, w *raceWorld, p project, del deleteResult, newThread string, insertErr error) (inserted bool) {
	t.Helper()
	if del.err != nil || del.del.Outcome(p.roots[0]) != threads.OutcomeDeleted {
		t.Fatalf("delete: %v, %v", del.del.Outcome(p.roots[0]), del.err)
	}
	if w.threadExists(p.roots[0]) {
		t.Fatal("deleted thread still exists")
	}
	switch {
	case insertErr == nil:
		if !w.threadExists(newThread) {
			t.Fatal("the new thread was cascaded away with the project")
		}
		if !w.projectExists(p.id) || len(del.del.Work.ProjectIDs) > 0 || w.teardowns(p.id) != 0 {
			t.Fatal("the project was deleted although a thread was added to it")
		}
	case isFKViolation(insertErr):
		if w.threadExists(newThread) {
			t.Fatal("the insert failed but its thread exists")
		}
		if w.projectExists(p.id) || len(del.del.Work.ProjectIDs) == 0 || w.teardowns(p.id) != 1 {
			t.Fatal("the insert was refused but the project was kept")
		}
	default:
		t.Fatalf("insert failed with something else than a foreign-key violation: %v", insertErr)
	}
	w.checkInvariants(t)
	return insertErr == nil
}

func TestRaceDeleteAndThreadInsertIntoTheProject(t *testing.T) {
	w := newRaceWorld(t, 1)
	ctx := context.Background()
	store := w.stores[0]
	inserter, locker := w.conn(t), w.conn(t)

	t.Run("free-running", func(t *testing.T) {
		seen := map[bool]int{}
		for range 4 * raceRounds {
			p := w.seedProject(1, 0)
			start := make(chan struct{})
			var del deleteResult
			var newThread string
			var insertErr error
			var wg sync.WaitGroup
			wg.Add(2)
			go func() {
				defer wg.Done()
				<-start
				d, err := store.Delete(ctx, threads.Request{ThreadIDs: []string{p.roots[0]}, Caller: user(p.owner)})
				del = deleteResult{p.roots[0], d, err}
			}()
			go func() {
				defer wg.Done()
				<-start
				newThread, insertErr = insertThread(ctx, inserter, p.owner, p.id)
			}()
			close(start)
			wg.Wait()
			seen[checkThreadInsertRace(t, w, p, del, newThread, insertErr)]++
		}
		t.Logf("insert won %d times, delete won %d times", seen[true], seen[false])
	})

	t.Run("insert commits while the delete waits: the project stays", func(t *testing.T) {
		p := w.seedProject(1, 0)
		tx, err := inserter.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		newThread, err := insertThread(ctx, tx, p.owner, p.id)
		if err != nil {
			t.Fatal(err)
		}
		pending := asyncDelete(store, p.roots[0], user(p.owner))
		w.waitForLockWaiters(t, 1) // the delete waits for the project lock
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if !checkThreadInsertRace(t, w, p, <-pending, newThread, nil) {
			t.Fatal("unreachable")
		}
	})

	t.Run("insert rolls back while the delete waits: the project goes", func(t *testing.T) {
		p := w.seedProject(1, 0)
		tx, err := inserter.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := insertThread(ctx, tx, p.owner, p.id); err != nil {
			t.Fatal(err)
		}
		pending := asyncDelete(store, p.roots[0], user(p.owner))
		w.waitForLockWaiters(t, 1)
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		del := <-pending
		if del.err != nil || len(del.del.Work.ProjectIDs) == 0 || w.projectExists(p.id) || w.teardowns(p.id) != 1 {
			t.Fatalf("project not deleted after the competing insert rolled back: %+v, %v", del.del, del.err)
		}
		w.checkInvariants(t)
	})

	t.Run("insert arrives while the delete holds the project: the insert fails", func(t *testing.T) {
		p := w.seedProject(1, 0)
		hold := lockAMessage(t, locker, p.roots[0])
		pending := asyncDelete(store, p.roots[0], user(p.owner))
		w.waitForLockWaiters(t, 1) // the delete holds the project, waits for the message
		inserted := make(chan error, 1)
		var newThread string
		go func() {
			var err error
			newThread, err = insertThread(ctx, inserter, p.owner, p.id)
			inserted <- err
		}()
		w.waitForLockWaiters(t, 2) // the insert waits for the project
		if err := hold.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		del, insertErr := <-pending, <-inserted
		if checkThreadInsertRace(t, w, p, del, newThread, insertErr) {
			t.Fatal("the insert succeeded into a project being deleted")
		}
	})
}

// checkMessageInsertRace asserts the only two acceptable ends of a delete of
// a thread racing an insert of a message into it: the insert failed cleanly,
// or the message went with the thread. Either way, no message is left
// without its thread and every surviving thread's counters are right.
func checkMessageInsertRace(t *testing.T, w *raceWorld, thread string, del deleteResult, insertErr error) (inserted bool) {
	t.Helper()
	if del.err != nil || del.del.Outcome(thread) != threads.OutcomeDeleted {
		t.Fatalf("delete: %v, %v", del.del.Outcome(thread), del.err)
	}
	if w.threadExists(thread) {
		t.Fatal("deleted thread still exists")
	}
	if insertErr != nil && !isFKViolation(insertErr) {
		t.Fatalf("insert failed with something else than a foreign-key violation: %v", insertErr)
	}
	if n := w.Count(`SELECT count(*) FROM public.messages WHERE thread_id = $1`, thread); n != 0 {
		t.Fatalf("%d messages outlived their thread", n)
	}
	w.checkInvariants(t)
	return insertErr == nil
}

func TestRaceDeleteAndMessageInsertIntoTheThread(t *testing.T) {
	w := newRaceWorld(t, 1)
	ctx := context.Background()
	store := w.stores[0]
	inserter, sibling, locker := w.conn(t), w.conn(t), w.conn(t)

	t.Run("free-running", func(t *testing.T) {
		seen := map[bool]int{}
		for range 4 * raceRounds {
			p := w.seedProject(2, 0) // the sibling keeps the project
			target, other := p.roots[0], p.roots[1]
			start := make(chan struct{})
			var del deleteResult
			var insertErr, siblingErr error
			var wg sync.WaitGroup
			wg.Add(3)
			go func() {
				defer wg.Done()
				<-start
				d, err := store.Delete(ctx, threads.Request{ThreadIDs: []string{target}, Caller: user(p.owner)})
				del = deleteResult{target, d, err}
			}()
			go func() {
				defer wg.Done()
				<-start
				insertErr = insertMessage(ctx, inserter, target)
			}()
			go func() {
				defer wg.Done()
				<-start
				siblingErr = insertMessage(ctx, sibling, other)
			}()
			close(start)
			wg.Wait()
			if siblingErr != nil {
				t.Fatalf("a message into the sibling thread failed: %v", siblingErr)
			}
			if len(del.del.Work.ProjectIDs) > 0 {
				t.Fatal("project deleted although the sibling thread remains")
			}
			seen[checkMessageInsertRace(t, w, target, del, insertErr)]++
			if n := w.Count(`SELECT total_message_count FROM public.threads WHERE thread_id = $1`, other); n != 3 {
				t.Fatalf("sibling thread counts %d messages, want 3", n)
			}
		}
		t.Logf("insert won %d times, delete won %d times", seen[true], seen[false])
	})

	t.Run("message commits while the delete waits: the message goes with the thread", func(t *testing.T) {
		p := w.seedProject(1, 0)
		tx, err := inserter.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := insertMessage(ctx, tx, p.roots[0]); err != nil {
			t.Fatal(err)
		}
		pending := asyncDelete(store, p.roots[0], user(p.owner))
		w.waitForLockWaiters(t, 1) // the delete waits for the thread row
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if !checkMessageInsertRace(t, w, p.roots[0], <-pending, nil) {
			t.Fatal("unreachable")
		}
	})

	t.Run("message arrives while the delete holds the thread: the insert fails", func(t *testing.T) {
		p := w.seedProject(1, 0)
		hold := lockAMessage(t, locker, p.roots[0])
		pending := asyncDelete(store, p.roots[0], user(p.owner))
		w.waitForLockWaiters(t, 1)
		inserted := make(chan error, 1)
		go func() { inserted <- insertMessage(ctx, inserter, p.roots[0]) }()
		w.waitForLockWaiters(t, 2) // the insert waits for the thread row
		if err := hold.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if checkMessageInsertRace(t, w, p.roots[0], <-pending, <-inserted) {
			t.Fatal("a message was inserted into a thread being deleted")
		}
	})
}

// TestRaceManyProjectsAndAccounts mixes everything at once: several accounts'
// projects, sub-agent threads, an admin and the owners deleting, thread and
// message inserts, all released together. Nothing may deadlock or error,
// and the invariants must hold at the end.
func TestRaceManyProjectsAndAccounts(t *testing.T) {
	w := newRaceWorld(t, 8)
	ctx := context.Background()
	admin := w.PersonalAccount()
	w.Role(admin, "admin")
	writers := []*pgx.Conn{w.conn(t), w.conn(t)}
	for range raceRounds {
		var ps []project
		for range 3 {
			ps = append(ps, w.seedProject(2, 1))
		}
		type job struct {
			thread string
			caller threads.Caller
		}
		var jobs []job
		for i, p := range ps {
			for j, th := range p.threads() {
				c := user(p.owner)
				if (i+j)%3 == 0 {
					c = user(admin)
				}
				jobs = append(jobs, job{th, c})
			}
		}
		start := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, len(jobs)+len(writers))
		next := make(chan job, len(jobs))
		for _, j := range jobs {
			next <- j
		}
		close(next)
		for _, s := range w.stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for j := range next {
					cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					del, err := s.Delete(cctx, threads.Request{ThreadIDs: []string{j.thread}, Caller: j.caller})
					cancel()
					if err != nil {
						errs <- fmt.Errorf("delete %s: %w", j.thread, err)
					} else if o := del.Outcome(j.thread); o != threads.OutcomeDeleted && o != threads.OutcomeNotFound {
						errs <- fmt.Errorf("delete %s: outcome %v", j.thread, o)
					}
				}
			}()
		}
		for i, c := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				p := ps[i]
				if err := insertMessage(ctx, c, p.roots[0]); err != nil && !isFKViolation(err) {
					errs <- err
				}
				if _, err := insertThread(ctx, c, p.owner, p.id); err != nil && !isFKViolation(err) {
					errs <- err
				}
			}()
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, p := range ps {
			if n := w.Count(`SELECT count(*) FROM public.threads WHERE thread_id = ANY($1::uuid[])`, p.threads()); n != 0 {
				t.Fatalf("%d threads survived", n)
			}
			// Either a racing thread insert kept the project, or it is gone
			// with exactly one teardown.
			kept := w.projectExists(p.id)
			if want := map[bool]int{true: 0, false: 1}[kept]; w.teardowns(p.id) != want {
				t.Fatalf("project kept=%v with %d teardowns", kept, w.teardowns(p.id))
			}
		}
		w.checkInvariants(t)
	}
}
