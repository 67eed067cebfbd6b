package bench

import (
	"context"
	"maps"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// breakdownSamples is how many deletes are taken apart.
const breakdownSamples = 100

// phases are PostgreSQL's own per-phase statistics, reported to the
// client when log_parser_stats, log_planner_stats and log_executor_stats
// are on and client_min_messages is log.
var phases = []struct{ notice, name string }{
	{"PARSER STATISTICS", "parse"},
	{"PARSE ANALYSIS STATISTICS", "parse analysis"},
	{"REWRITER STATISTICS", "rewrite"},
	{"PLANNER STATISTICS", "plan"},
	{"EXECUTOR STATISTICS", "execute (with the triggers)"},
}

var elapsedStat = regexp.MustCompile(`([0-9.]+) s elapsed`)

// benchBreakdown takes our delete apart at 0 ms added latency, through the
// proxies as in BenchmarkLatency: the bare round trip, each phase of the
// PostgreSQL statement as the server itself times it, the rest of the
// batch (the lock statement, the commit and its WAL flush), and the Redis
// invalidation. It shows where the time that is not network goes.
func benchBreakdown(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	ctx := context.Background()

	// A pool like the service's, whose sessions report the phases. For
	// every batch the statement with the largest figure of each phase is
	// the delete (the lock and set_config statements are tiny).
	var mu sync.Mutex
	current := map[string]time.Duration{}
	pool, err := postgres.NewPool(ctx, postgres.PoolOptions{
		URL: testenv.ViaAddr(e.dbURL, e.pgProxy.Addr) +
			"&log_parser_stats=on&log_planner_stats=on&log_executor_stats=on&client_min_messages=log",
		MaxConns: 1,
		BeforeConnect: func(_ context.Context, cc *pgx.ConnConfig) error {
			cc.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
				m := elapsedStat.FindStringSubmatch(n.Detail)
				if m == nil {
					return
				}
				v, _ := strconv.ParseFloat(m[1], 64)
				mu.Lock()
				current[n.Message] = max(current[n.Message], time.Duration(v*float64(time.Second)))
				mu.Unlock()
			}
			return nil
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	timed := &postgres.Store{Pool: pool}
	plain := &postgres.Store{Pool: e.pool(viaProxy)}
	cache := &redis.Cache{Client: e.redisClient(viaProxy)}

	// The sessions that report their phases also write them to the server
	// log, which slows their batches down: the timings of whole batches come
	// from a plain pool, used for every other delete.
	fixtures := e.seedN(2*(breakdownSamples+latencyWarmup), typical)
	e.analyze()
	samples := map[string][]time.Duration{}
	for i, f := range fixtures {
		store := plain
		if i%2 == 1 {
			store = timed
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		t0 := time.Now()
		if _, err := store.Pool.Exec(dctx, `SELECT 1`); err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		clear(current)
		mu.Unlock()
		t1 := time.Now()
		del, err := store.Delete(dctx, threads.Request{ThreadIDs: []string{f.threads[0]}, Caller: threads.Caller{UserID: f.owner}})
		t2 := time.Now()
		if err != nil || del.Outcome(f.threads[0]) != threads.OutcomeDeleted {
			b.Fatalf("delete: %v %v", del.Outcome(f.threads[0]), err)
		}
		mu.Lock()
		got := maps.Clone(current)
		mu.Unlock()
		if err := cache.Apply(dctx, del.Work); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		cancel()
		if i < 2*latencyWarmup {
			continue
		}
		if store == timed {
			for _, p := range phases {
				samples[p.notice] = append(samples[p.notice], got[p.notice])
			}
			continue
		}
		samples["rtt"] = append(samples["rtt"], t1.Sub(t0))
		samples["batch"] = append(samples["batch"], t2.Sub(t1))
		samples["redis"] = append(samples["redis"], t3.Sub(t2))
	}

	t := newTable("Where our time goes, 0 ms added (p50 of 100 deletes of 1 of 2 threads)", "part", "p50")
	t.add("a bare round trip through the proxy (SELECT 1)", ms(median(samples["rtt"])))
	var server time.Duration
	for _, p := range phases {
		m := median(samples[p.notice])
		server += m
		t.add("PostgreSQL, the delete statement: "+p.name, ms(m))
	}
	batch := median(samples["batch"])
	t.add("PostgreSQL, the rest: lock statement, commit and WAL flush, protocol", ms(max(batch-server-median(samples["rtt"]), 0)))
	t.add("= the PostgreSQL batch (Store.Delete)", ms(batch))
	t.add("Redis invalidation (one EVAL)", ms(median(samples["redis"])))
	t.note("Phases as PostgreSQL times them itself (log_parser_stats, log_planner_stats, log_executor_stats): the client sends only the call of thread_delete.delete_thread; the plans of its statements are cached per connection by PL/pgSQL, so parse and plan stay small, and their execution counts under execute.")
	t.print()
}
