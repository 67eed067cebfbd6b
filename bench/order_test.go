package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

// doomedCTE collects the thread and its sub-agent threads, as the service's
// statement does; every order below starts from it.
const doomedCTE = `WITH RECURSIVE doomed AS (
    SELECT $1::uuid AS thread_id
    UNION
    SELECT c.thread_id FROM public.threads c JOIN doomed d ON c.parent_thread_id = d.thread_id
)`

// order is one way of deleting a thread's rows inside the transaction. All
// of them leave the same end state: the thread, its messages, runs and
// documents gone; every message row's trigger has fired.
type order struct {
	key, name string
	// maxSize is the longest thread it is run on (0: all sizes).
	maxSize int
	// run deletes thread in tx and returns the number of messages it counts.
	run func(ctx context.Context, tx pgx.Tx, thread string) (int64, error)
}

// statement is an order done by one statement returning the message count.
func statement(sql string) func(context.Context, pgx.Tx, string) (int64, error) {
	return func(ctx context.Context, tx pgx.Tx, thread string) (int64, error) {
		var n int64
		err := tx.QueryRow(ctx, sql, thread).Scan(&n)
		return n, err
	}
}

var orders = []order{
	{"A", "explicit DELETE of messages in a CTE, counted by RETURNING", 0, statement(doomedCTE + `,
del_runs AS (DELETE FROM public.agent_runs r WHERE r.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))),
del_docs AS (DELETE FROM public.documents x WHERE x.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))),
del_msgs AS (DELETE FROM public.messages m WHERE m.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed)) RETURNING 1),
del_threads AS (DELETE FROM public.threads t WHERE t.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed)))
SELECT count(*) FROM del_msgs`)},
	{"B", "messages left to ON DELETE CASCADE, counted by the threads' counters", 0, statement(doomedCTE + `,
del_runs AS (DELETE FROM public.agent_runs r WHERE r.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))),
del_docs AS (DELETE FROM public.documents x WHERE x.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))),
del_threads AS (DELETE FROM public.threads t WHERE t.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))
                RETURNING t.total_message_count)
SELECT coalesce(sum(total_message_count), 0) FROM del_threads`)},
	{"C", "explicit DELETE of messages in a CTE without RETURNING, counted by the counters", 0, statement(doomedCTE + `,
del_runs AS (DELETE FROM public.agent_runs r WHERE r.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))),
del_docs AS (DELETE FROM public.documents x WHERE x.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))),
del_msgs AS (DELETE FROM public.messages m WHERE m.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))),
del_threads AS (DELETE FROM public.threads t WHERE t.thread_id = ANY (ARRAY(SELECT thread_id FROM doomed))
                RETURNING t.total_message_count)
SELECT coalesce(sum(total_message_count), 0) FROM del_threads`)},
	{"D", "messages first, by a statement of their own, then the thread (the original's order)", 10_000,
		func(ctx context.Context, tx pgx.Tx, thread string) (int64, error) {
			var n int64
			for i, sql := range []string{
				`DELETE FROM public.agent_runs WHERE thread_id = $1`,
				`DELETE FROM public.messages WHERE thread_id = $1`,
				`DELETE FROM public.documents WHERE thread_id = $1`,
				`DELETE FROM public.threads WHERE thread_id = $1`,
			} {
				tag, err := tx.Exec(ctx, sql, thread)
				if err != nil {
					return 0, err
				}
				if i == 1 {
					n = tag.RowsAffected()
				}
			}
			return n, nil
		}},
}

// orderReps is how many threads of each size each order deletes (median).
var orderReps = map[int]int{1_000: 5, 10_000: 3, 100_000: 4}

// benchOrder compares the orders above on threads of 1k, 10k and 100k
// messages, each in its own transaction straight to PostgreSQL, and
// measures the message-counter trigger: the same orders again in a scratch
// database where the trigger is disabled (for comparison only — the service
// never disables it).
func benchOrder(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	scratchURL := testenv.Database(b)
	scratch := &env{tb: b, Seeder: testenv.Seeder{TB: b, Pool: testenv.Pool(b, scratchURL)}, dbURL: scratchURL}
	scratch.Exec(`ALTER TABLE public.messages DISABLE TRIGGER trg_update_thread_message_counts`)
	largest := scaleSizes[len(scaleSizes)-1]

	t := newTable("Order of the deletes inside the transaction, straight to PostgreSQL (median wall time; backend CPU at the largest size)",
		"order", "1k messages", "10k messages", "100k messages", "backend CPU, 100k", "CPU per message")
	on := e.measureOrders(orders, scaleSizes)
	off := scratch.measureOrders(orders[:2], scaleSizes[1:])
	for _, o := range orders {
		t.add(o.row(o.key+": "+o.name, on[o.key])...)
	}
	for _, o := range orders[:2] {
		t.add(o.row(o.key+" with the trigger disabled (scratch database)", off[o.key])...)
	}
	for _, o := range orders[:2] {
		trig := on[o.key][largest].cpu - off[o.key][largest].cpu
		t.note("Trigger cost in %s at %d messages: %s of %s backend CPU (%s per deleted message).",
			o.key, largest, ms(trig), ms(on[o.key][largest].cpu), perMessage(trig, largest))
	}
	t.note("D is what the original does: each message's trigger updates a thread row that still exists, and each update walks the versions the earlier ones left: quadratic (120k messages took 7.8 minutes in a manual run).")
	t.print()
}

// orderSample is one delete: the wall time of its transaction (statements
// and commit) and the CPU time of the backend that ran it. On a shared
// machine the CPU time is the steadier of the two.
type orderSample struct{ wall, cpu time.Duration }

// row formats o's medians for the table; sizes o was not run on say so.
func (o order) row(name string, bySize map[int]orderSample) []any {
	row := []any{name}
	largest := scaleSizes[len(scaleSizes)-1]
	for _, n := range scaleSizes {
		switch s, ok := bySize[n]; {
		case ok:
			row = append(row, ms(s.wall))
		case o.maxSize > 0 && n > o.maxSize:
			row = append(row, "not run (quadratic)")
		default:
			row = append(row, "—")
		}
	}
	if s, ok := bySize[largest]; ok {
		return append(row, ms(s.cpu), perMessage(s.cpu, largest))
	}
	return append(row, "—", "—")
}

// measureOrders deletes, for each size and repetition, a fresh thread with
// each order in turn — interleaved, so that changes in the machine's load
// hit every order alike — checks the end state, and returns the median
// sample per order and size.
func (e *env) measureOrders(list []order, sizes []int) map[string]map[int]orderSample {
	e.tb.Helper()
	ctx := context.Background()
	conn, err := e.Pool.Acquire(ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	defer conn.Release()
	backend := int(conn.Conn().PgConn().PID())

	out := map[string]map[int]orderSample{}
	for _, n := range sizes {
		walls, cpus := map[string][]time.Duration{}, map[string][]time.Duration{}
		for range orderReps[n] {
			for _, o := range list {
				if o.maxSize > 0 && n > o.maxSize {
					continue
				}
				f, sibling := e.bigThread(n)
				cpu0, _ := procCPU(backend)
				start := time.Now()
				got, err := inTx(ctx, conn, func(tx pgx.Tx) (int64, error) { return o.run(ctx, tx, f.threads[0]) })
				wall := time.Since(start)
				cpu1, _ := procCPU(backend)
				if err != nil {
					e.tb.Fatalf("order %s, %d messages: %v", o.key, n, err)
				}
				if got != int64(n) {
					e.tb.Fatalf("order %s counted %d messages, want %d", o.key, got, n)
				}
				e.mustBeGone(f.threads[0])
				e.siblingIntact(sibling)
				walls[o.key] = append(walls[o.key], wall)
				cpus[o.key] = append(cpus[o.key], cpu1-cpu0)
			}
		}
		for k := range walls {
			if out[k] == nil {
				out[k] = map[int]orderSample{}
			}
			out[k][n] = orderSample{median(walls[k]), median(cpus[k])}
		}
	}
	return out
}

func perMessage(d time.Duration, n int) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)/float64(n))
}

func inTx(ctx context.Context, conn *pgxpool.Conn, f func(pgx.Tx) (int64, error)) (int64, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	n, err := f(tx)
	if err != nil {
		return 0, err
	}
	return n, tx.Commit(ctx)
}
