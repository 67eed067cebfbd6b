package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/internal/samtemplate"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// bigThreadRuns are the threads deleted: messages of a few bytes at 1k,
// 10k, 100k and 300k messages, and an agent-like thread whose messages
// carry 4 kB each (tool output: stored out of line, in the TOAST table,
// which the delete empties too).
var bigThreadRuns = []struct {
	messages, contentBytes, reps int
}{
	{1_000, 0, 3},
	{10_000, 0, 3},
	{100_000, 0, 1},
	{300_000, 0, 1},
	{10_000, 4096, 1},
}

// databaseReserve is what the delete-thread function keeps of its deadline
// besides the database's own time: threads.Deleter answers 200 ms before
// the deadline (answerReserve) and PostgreSQL gives up 50 ms before that
// (postgres serverTimeoutMargin).
const databaseReserve = 250 * time.Millisecond

// benchScale deletes threads of 1k to 300k messages (with n/10 vector rows
// and n/100 agent runs) on the production schema, through the service's
// Deleter straight to PostgreSQL and Redis, with the function's own
// deadline (template.yaml), and records time and the Go heap: the delete
// never loads rows into the client, so what it allocates must not grow with
// the thread. From the time per message it finds the longest thread the
// function can delete within its deadline.
func benchScale(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	timeout := functionTimeout(b, "DeleteThreadFunction")
	d := e.deleter(direct)
	warm := e.seed(typical) // opens the connections
	e.remove(d, warm.owner, warm.threads[0])

	t := newTable("Thread size: delete through the Deleter on the production schema, direct",
		"messages", "bytes per message", "vector rows", "agent runs", "deletes", "time (median)", "per message", "Go bytes allocated", "Go heap objects allocated")
	perMsg := map[int]time.Duration{} // by content size, from the largest thread
	var allocs []uint64
	for _, run := range bigThreadRuns {
		var took []time.Duration
		var bytes, objects []uint64
		for range run.reps {
			f, sibling := e.bigThread(run.messages, run.contentBytes)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			dt, res := e.removeWithin(d, f.owner, f.threads[0], timeout)
			runtime.ReadMemStats(&after)
			if res.Messages != int64(run.messages) {
				b.Fatalf("%d messages reported, want %d", res.Messages, run.messages)
			}
			e.mustBeGone(f.threads[0])
			e.siblingIntact(sibling)
			took = append(took, dt)
			bytes = append(bytes, after.TotalAlloc-before.TotalAlloc)
			objects = append(objects, after.Mallocs-before.Mallocs)
		}
		m := median(took)
		perMsg[run.contentBytes] = m / time.Duration(run.messages)
		content := "a few"
		if run.contentBytes > 0 {
			content = fmt.Sprint(run.contentBytes)
		}
		t.add(run.messages, content, max(run.messages/10, 1), max(run.messages/100, 1), run.reps, ms(m),
			perMessage(m, run.messages), kb(medianU(bytes)), medianU(objects))
		allocs = append(allocs, medianU(bytes))
	}
	budget := timeout - databaseReserve
	t.note("Deadline: DeleteThreadFunction's Timeout is %s (template.yaml); the database gets %s of it.", timeout, budget)
	t.note("Longest thread deletable within it on this machine, at the time per message of the largest thread measured: about %s messages of a few bytes, about %s messages of 4 kB (with a tenth as many vector rows and a hundredth as many agent runs).",
		thousands(int(budget/perMsg[0])), thousands(int(budget/perMsg[4096])))
	t.note("Client memory flat (allocations at the largest thread within 2× of those at the smallest): %s. Load average at the end: %s.",
		verdict(allocs[len(allocs)-1] <= 2*allocs[0]), loadAverage())
	t.print()
	b.ReportMetric(float64(perMsg[0])/float64(time.Microsecond), "µs/message")
}

// bigThread seeds a project holding a thread of n messages of contentBytes
// each (0: a few bytes), n/10 vector-store rows and n/100 agent runs, and a
// small sibling thread (so that the project stays and its counters can be
// checked), then vacuums and analyzes the tables, as autovacuum would have
// by the time such a thread is deleted. Its counters are set to what the
// trigger would have left: seeding runs without triggers (see bulk).
func (e *env) bigThread(n, contentBytes int) (f fixture, sibling string) {
	e.tb.Helper()
	f.owner = e.PersonalAccount()
	f.project = e.Project(f.owner, "", "")
	thread := e.Thread(f.owner, f.project, "")
	sibling = e.Thread(f.owner, f.project, "")
	f.threads = []string{thread}
	if contentBytes > 0 {
		// Random hex does not compress much, so the content is stored out
		// of line as it would be.
		e.bulk().Exec(`INSERT INTO public.messages (thread_id, type, is_llm_message, content)
			SELECT $1, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'tool' END, true,
			       jsonb_build_object('role', 'tool', 'content',
			           (SELECT string_agg(md5(random()::text || g || k), '') FROM generate_series(1, $3::int / 32) k))
			  FROM generate_series(1, $2::int) g`, thread, n, contentBytes)
		e.bulk().Content(thread, 0, max(n/100, 1), max(n/10, 1))
	} else {
		e.bulk().Content(thread, n, max(n/100, 1), max(n/10, 1))
	}
	e.bulk().Content(sibling, 20, 1, 1)
	e.Exec(`UPDATE public.threads t
		   SET total_message_count = (SELECT count(*) FROM public.messages m WHERE m.thread_id = t.thread_id),
		       user_message_count = (SELECT count(*) FROM public.messages m WHERE m.thread_id = t.thread_id AND m.type = 'user')
		 WHERE t.thread_id IN ($1, $2)`, thread, sibling)
	e.Exec(`VACUUM (ANALYZE) public.threads, public.messages, public.agent_runs, public.documents`)
	return f, sibling
}

// removeWithin is remove with the given deadline, as the function has it.
func (e *env) removeWithin(d *threads.Deleter, owner, thread string, timeout time.Duration) (time.Duration, threads.Result) {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	res, err := d.Delete(ctx, threads.Request{ThreadIDs: []string{thread}, Caller: threads.Caller{UserID: owner}})
	took := time.Since(start)
	if err != nil || res.CacheErr != nil || res.QueueErr != nil {
		e.tb.Fatalf("delete %s: %v (cache: %v, queue: %v)", thread, err, res.CacheErr, res.QueueErr)
	}
	return took, res
}

// functionTimeout reads a function's Timeout from template.yaml.
func functionTimeout(tb testing.TB, logicalID string) time.Duration {
	tb.Helper()
	tmpl, err := samtemplate.Load(filepath.Join(testenv.RepoRoot(tb), "template.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	s, ok := samtemplate.Int(tmpl.FunctionProperties(logicalID)["Timeout"])
	if !ok {
		tb.Fatalf("%s has no literal Timeout", logicalID)
	}
	return time.Duration(s) * time.Second
}

// thousands formats n rounded to thousands, as "1,400k".
func thousands(n int) string {
	k := n / 1000
	if k < 1000 {
		return fmt.Sprintf("%dk", k)
	}
	return fmt.Sprintf("%d,%03dk", k/1000, k%1000)
}

func perMessage(d time.Duration, n int) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(n)/float64(time.Microsecond))
}

func kb(n uint64) string { return fmt.Sprintf("%.1f KB", float64(n)/1024) }

func medianU(v []uint64) uint64 {
	ds := make([]time.Duration, len(v))
	for i, x := range v {
		ds[i] = time.Duration(x)
	}
	return uint64(median(ds))
}
