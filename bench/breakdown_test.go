package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sys/unix"

	"github.com/kortix-ai/thread-delete/shared/apigw"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// breakdownSamples is how many deletes of ours and of the floor each part
// of the breakdown takes apart.
const breakdownSamples = 200

// benchBreakdown finds where our delete's time goes that the floor's does
// not: the wall-clock split of the in-process path (same proxies and delay
// as BenchmarkLatency), PostgreSQL's own time and WAL per statement
// (auto_explain in the benchmark's own session), the commit, and the Go
// side's CPU by category (a CPU profile of the handler).
func benchBreakdown(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	e.wallSplit(b)
	e.serverSteps(b)
	e.cpuProfile(b)
}

// timedStore and timedCache record how long the last call took
// (wall time, and the CPU time of the calling OS thread).
type timedStore struct {
	threads.Store
	last, cpu time.Duration
}

func (s *timedStore) Delete(ctx context.Context, req threads.Request) (threads.Deletion, error) {
	start, c0 := time.Now(), threadCPU()
	d, err := s.Store.Delete(ctx, req)
	s.last, s.cpu = time.Since(start), threadCPU()-c0
	return d, err
}

type timedCache struct {
	threads.Cache
	last, cpu time.Duration
}

func (c *timedCache) Apply(ctx context.Context, w threads.CacheWork) error {
	start, c0 := time.Now(), threadCPU()
	err := c.Cache.Apply(ctx, w)
	c.last, c.cpu = time.Since(start), threadCPU()-c0
	return err
}

// wallSplit times the parts of our in-process handler and of the floor,
// interleaved, with linkDelay added to each PostgreSQL reply.
func (e *env) wallSplit(b *testing.B) {
	ctx := context.Background()
	h := e.handler(viaProxy)
	d := h.Deleter.(*threads.Deleter)
	store, cache := &timedStore{Store: d.Store}, &timedCache{Cache: d.Cache}
	d.Store, d.Cache = store, cache
	fl := e.floor(viaProxy)

	n := latencyWarmup + breakdownSamples
	ours, floors := e.seedN(n, typical), e.seedN(n, typical)
	events := make([]apigwEvent, n)
	for i, f := range ours {
		events[i] = e.event(f.threads[0], f.owner)
	}
	e.analyze()
	e.pgProxy.SetReplyDelay(linkDelay)
	defer e.pgProxy.SetReplyDelay(0)

	s := map[string][]time.Duration{}
	for i := range n {
		start := time.Now()
		if _, err := fl.db.Exec(ctx, `SELECT 1`); err != nil {
			b.Fatal(err)
		}
		rtt := time.Since(start)

		start = time.Now()
		resp, _ := h.Handle(ctx, events[i].APIGatewayV2HTTPRequest)
		total := time.Since(start)
		if resp.StatusCode != 200 {
			b.Fatalf("ours: status %d: %s", resp.StatusCode, resp.Body)
		}
		pg, rd, err := fl.parts(ctx, floors[i].owner, floors[i].threads[0])
		if err != nil {
			b.Fatal(err)
		}
		if i < latencyWarmup {
			continue
		}
		s["rtt"] = append(s["rtt"], rtt)
		s["ours pg"] = append(s["ours pg"], store.last)
		s["ours pg server"] = append(s["ours pg server"], store.last-rtt)
		s["ours redis"] = append(s["ours redis"], cache.last)
		s["ours own"] = append(s["ours own"], total-store.last-cache.last)
		s["ours total"] = append(s["ours total"], total)
		s["floor pg"] = append(s["floor pg"], pg)
		s["floor pg server"] = append(s["floor pg server"], pg-rtt)
		s["floor redis"] = append(s["floor redis"], rd)
		s["floor total"] = append(s["floor total"], pg+rd)
	}
	t := newTable(fmt.Sprintf("Where the time goes, in-process, %s added per PostgreSQL reply (p50 of %d each, interleaved)", ms(linkDelay), breakdownSamples),
		"part", "ours", "floor", "ours − floor")
	line := func(name, ours, floor string) {
		o, f := median(s[ours]), time.Duration(0)
		if floor != "" {
			f = median(s[floor])
		}
		t.add(name, ms(o), ms(f), ms(o-f))
	}
	t.add("a bare PostgreSQL round trip (SELECT 1), for scale", ms(median(s["rtt"])), ms(median(s["rtt"])), "")
	line("PostgreSQL: the one round trip (statements, commit and WAL flush, reply)", "ours pg", "floor pg")
	line("… of which server-side (each sample less the bare round trip taken just before it)", "ours pg server", "floor pg server")
	line("Redis: the one round trip (ours: EVAL of the work script; floor: DECRBY + DEL)", "ours redis", "floor redis")
	line("the function's own work (JWT check, summary decode, response, log line)", "ours own", "")
	line("= in-process total", "ours total", "floor total")
	t.note("Each row is the median of its own samples, so rows do not add up exactly. Load average at the end: %s.", loadAverage())
	t.print()
}

// explained is one statement auto_explain reported.
type explained struct {
	dur                       time.Duration
	query                     string
	walRecords, walBytes, fpi int64
}

// explainCollector gathers the plans auto_explain sends to the client as
// notices (auto_explain.log_level = notice).
type explainCollector struct {
	mu   sync.Mutex
	list []explained
}

var durationNotice = "duration: "

func (c *explainCollector) onNotice(_ *pgconn.PgConn, n *pgconn.Notice) {
	msg, ok := strings.CutPrefix(n.Message, durationNotice)
	if !ok {
		return
	}
	num, rest, ok := strings.Cut(msg, " ms")
	if !ok {
		return
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return
	}
	var plan struct {
		Query string `json:"Query Text"`
		Plan  struct {
			WALRecords int64 `json:"WAL Records"`
			WALBytes   int64 `json:"WAL Bytes"`
			WALFPI     int64 `json:"WAL FPI"`
		} `json:"Plan"`
	}
	if _, js, ok := strings.Cut(rest, "plan:\n"); ok {
		json.Unmarshal([]byte(js), &plan) //nolint:errcheck // a plan we cannot read still has its duration
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, explained{
		dur: time.Duration(v * float64(time.Millisecond)), query: plan.Query,
		walRecords: plan.Plan.WALRecords, walBytes: plan.Plan.WALBytes, fpi: plan.Plan.WALFPI,
	})
}

// take returns what was collected since the last take.
func (c *explainCollector) take() []explained {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.list
	c.list = nil
	return out
}

// step names a statement auto_explain reported. Nested statements (the
// foreign-key cascades and checks, the counter trigger) run inside the
// statement that fired them and are counted in its time too; their names
// start with "↳".
func step(query string) string {
	q := strings.Join(strings.Fields(query), " ")
	for _, s := range []struct{ marker, name string }{
		{"SELECT set_config(", "settings statement (set_config: statement and lock timeouts)"},
		{"SELECT thread_delete.", stepFunction},
		{"WITH runs AS", "5. delete, and which locked projects it leaves empty"},
		{"INSERT INTO thread_delete.outbox (id, kind, payload) VALUES", "7. the Redis work's outbox row"},
		{"WITH dropped AS", "6. drop emptied projects, teardown outbox rows"},
		{"v_admin := EXISTS", "caller: admin role"},
		{"SELECT c.admin, c.members", "0. caller's role and accounts, access check (no lock)"},
		{"WITH r AS MATERIALIZED", "0. access check (no lock)"},
		{"SELECT CASE WHEN p_key_account", "↳ write rule (SQL function, per row)"},
		{"FROM public.projects p WHERE p.project_id = ANY (v_projects)", "1. lock projects"},
		{"FROM public.projects p WHERE p.project_id = ANY (v_more)", "4. lock other projects"},
		{"WHERE t.thread_id = ANY (v_cand) ORDER BY t.thread_id FOR UPDATE", "1. lock requested threads"},
		{"parent_thread_id = ANY (v_front)", "2. closure round (children of the newest level)"},
		{"WITH RECURSIVE t AS MATERIALIZED", "3. decide again"},
		{"DELETE FROM public.agent_runs", "delete agent runs"},
		{"DELETE FROM public.documents", "delete vector-store rows"},
		{"DELETE FROM public.threads", "delete the thread"},
		{`DELETE FROM ONLY "public"."messages"`, "↳ cascade: messages"},
		{`DELETE FROM ONLY "public"."documents"`, "↳ cascade: vector-store rows (composite key)"},
		{`DELETE FROM ONLY "public"."threads"`, "↳ cascade: sub-agent threads"},
		{`DELETE FROM ONLY`, "↳ cascade: rows of other tables (ON DELETE CASCADE)"},
		{`SELECT 1 FROM ONLY "public"."agent_runs"`, "↳ foreign-key check: no agent run left (NO ACTION)"},
		{`SELECT 1 FROM ONLY "public"."threads"`, "↳ foreign-key check: thread key not re-used (NO ACTION)"},
		{"UPDATE public.threads", "↳ counter trigger, per message"},
		{`UPDATE ONLY "public"`, "↳ cascade: SET NULL in other tables"},
		{`SELECT 1 FROM ONLY`, "↳ foreign-key check, other"},
	} {
		if strings.Contains(q, s.marker) {
			return s.name
		}
	}
	if len(q) > 60 {
		q = q[:60] + "…"
	}
	return q
}

// stepFunction is the call of the delete function: the statements it runs
// are reported one by one.
const stepFunction = "the delete function, as called"

// stepSamples are the per-delete sums of each step.
type stepSamples struct {
	order                 []string
	dur                   map[string][]time.Duration
	runs, walRec, walByte map[string][]int64
}

func newStepSamples() *stepSamples {
	return &stepSamples{dur: map[string][]time.Duration{}, runs: map[string][]int64{},
		walRec: map[string][]int64{}, walByte: map[string][]int64{}}
}

// add records one delete's statements.
func (s *stepSamples) add(list []explained) {
	type sum struct {
		dur         time.Duration
		n, rec, byt int64
	}
	per := map[string]*sum{}
	for _, x := range list {
		name := step(x.query)
		if per[name] == nil {
			per[name] = &sum{}
			if _, seen := s.dur[name]; !seen {
				s.order = append(s.order, name)
				s.dur[name] = nil
			}
		}
		p := per[name]
		p.dur += x.dur
		p.n++
		p.rec += x.walRecords
		p.byt += x.walBytes
	}
	for _, name := range s.order {
		p := per[name]
		if p == nil {
			p = &sum{}
		}
		s.dur[name] = append(s.dur[name], p.dur)
		s.runs[name] = append(s.runs[name], p.n)
		s.walRec[name] = append(s.walRec[name], p.rec)
		s.walByte[name] = append(s.walByte[name], p.byt)
	}
}

func medianI(v []int64) int64 {
	ds := make([]time.Duration, len(v))
	for i, x := range v {
		ds[i] = time.Duration(x)
	}
	return int64(median(ds))
}

// explainPool opens a one-connection pool straight to PostgreSQL whose
// session reports every statement to c.
func (e *env) explainPool(c *explainCollector) *pgxpool.Pool {
	pool, err := postgres.NewPool(context.Background(), postgres.PoolOptions{
		URL:      e.dbURL,
		MaxConns: 1,
		BeforeConnect: func(_ context.Context, cc *pgx.ConnConfig) error {
			cc.OnNotice = c.onNotice
			return nil
		},
	})
	if err != nil {
		e.tb.Fatal(err)
	}
	e.tb.Cleanup(pool.Close)
	// auto_explain is loaded into this session only (no server restart,
	// no shared_preload_libraries); its plans come to the client as
	// notices.
	if _, err := pool.Exec(context.Background(), `LOAD 'auto_explain'`); err != nil {
		e.tb.Fatalf("auto_explain: %v", err)
	}
	return pool
}

// explainSettings are the auto_explain settings of one pass.
func explainSettings(pool *pgxpool.Pool, nested bool) error {
	_, err := pool.Exec(context.Background(), fmt.Sprintf(`
		SET auto_explain.log_min_duration = 0;
		SET auto_explain.log_level = notice;
		SET auto_explain.log_format = json;
		SET auto_explain.log_nested_statements = %[1]t;
		SET auto_explain.log_analyze = %[1]t;
		SET auto_explain.log_timing = off;
		SET auto_explain.log_buffers = %[1]t;
		SET auto_explain.log_wal = %[1]t;`, nested))
	return err
}

// walStats reads the server-wide WAL counters.
type walStats struct{ syncs int64 }

func (e *env) walStats() walStats {
	var w walStats
	if err := e.Pool.QueryRow(context.Background(),
		`SELECT wal_sync FROM pg_stat_wal`).Scan(&w.syncs); err != nil {
		e.tb.Fatal(err)
	}
	return w
}

// serverSteps reports PostgreSQL's own time per statement for ours and the
// floor, straight to PostgreSQL (no proxy): two passes of interleaved
// deletes in a session with auto_explain loaded. The first logs every
// statement, nested ones included, with their WAL (log_analyze, without
// per-node timing); the second only the statements the client sent, so
// that their times carry no logging of nested statements. A third pass
// runs each delete as an explicit transaction to time the COMMIT alone.
func (e *env) serverSteps(b *testing.B) {
	ctx := context.Background()
	c := &explainCollector{}
	pool := e.explainPool(c)
	store := &postgres.Store{Pool: pool}
	fl := &floor{db: pool, rdb: e.redisClient(direct)}

	n := latencyWarmup + breakdownSamples
	fixtures := e.seedN(6*n, typical)
	e.analyze()
	next := func() fixture { f := fixtures[0]; fixtures = fixtures[1:]; return f }
	oursDelete := func(f fixture) {
		del, err := store.Delete(ctx, threads.Request{ThreadIDs: []string{f.threads[0]}, Caller: threads.Caller{UserID: f.owner}})
		if err != nil || del.Outcome(f.threads[0]) != threads.OutcomeDeleted {
			b.Fatalf("ours: %v %v", del.Outcome(f.threads[0]), err)
		}
	}
	floorDelete := func(f fixture) {
		if err := fl.delete(ctx, f.owner, f.threads[0]); err != nil {
			b.Fatal(err)
		}
	}

	// Pass 1: every statement, with its WAL.
	if err := explainSettings(pool, true); err != nil {
		b.Fatal(err)
	}
	// interleaved runs n deletes of each, ours then the floor's, and keeps
	// what the collector saw of each after the warm-up.
	interleaved := func() (ours, flo *stepSamples) {
		ours, flo = newStepSamples(), newStepSamples()
		for i := range n {
			c.take()
			oursDelete(next())
			o := c.take()
			floorDelete(next())
			f := c.take()
			if i >= latencyWarmup {
				ours.add(o)
				flo.add(f)
			}
		}
		return ours, flo
	}
	w0 := e.walStats()
	ours, flo := interleaved()
	w1 := e.walStats()

	// Pass 2: the client's statements only.
	if err := explainSettings(pool, false); err != nil {
		b.Fatal(err)
	}
	oursTop, floTop := interleaved()

	// Pass 3: the commit on its own (explicit transactions, straight to
	// the server), and a bare round trip on the same connection.
	if _, err := pool.Exec(ctx, `SET auto_explain.log_min_duration = -1`); err != nil {
		b.Fatal(err)
	}
	var oursCommit, floorCommit, bare []time.Duration
	var oursWAL, floorWAL []int64
	for i := range n {
		l0 := e.walLSN()
		oc := e.commitTime(pool, next(), true)
		l1 := e.walLSN()
		fc := e.commitTime(pool, next(), false)
		l2 := e.walLSN()
		start := time.Now()
		if _, err := pool.Exec(ctx, `SELECT 1`); err != nil {
			b.Fatal(err)
		}
		if i >= latencyWarmup {
			oursCommit, floorCommit, bare = append(oursCommit, oc), append(floorCommit, fc), append(bare, time.Since(start))
			oursWAL, floorWAL = append(oursWAL, l1-l0), append(floorWAL, l2-l1)
		}
	}

	print := func(title string, steps, top *stepSamples, commit time.Duration) {
		t := newTable(title, "step", "runs per delete", "time p50", "WAL records", "WAL bytes")
		for _, name := range steps.order {
			if name == stepFunction { // its statements are the rows
				continue
			}
			r, by := medianI(steps.walRec[name]), medianI(steps.walByte[name])
			t.add(name, medianI(steps.runs[name]), ms(median(steps.dur[name])), r, by)
		}
		var server time.Duration
		for _, name := range top.order {
			server += median(top.dur[name])
		}
		t.add("= the statements the client sent, timed without nested logging", "", ms(server), "", "")
		t.add("COMMIT with its WAL flush (explicit transaction, less a bare round trip)", 1, ms(commit), "", "")
		t.note("Times are executor time as auto_explain measures it; a nested row (↳) runs inside the statement that fired it and counts in its time too. A statement's WAL is that of its own plan: the foreign-key cascades it fires are rows of their own.")
		t.print()
	}
	print(fmt.Sprintf("PostgreSQL, ours: statements of one delete (p50 of %d, auto_explain in the benchmark's session)", breakdownSamples),
		ours, oursTop, median(oursCommit)-median(bare))
	print(fmt.Sprintf("PostgreSQL, floor: statements of one delete (p50 of %d, interleaved with ours)", breakdownSamples),
		flo, floTop, median(floorCommit)-median(bare))
	deletes := int64(2 * n)
	t := newTable("WAL per delete", "measure", "ours", "floor")
	t.add("WAL bytes inserted, commit record included (p50)", medianI(oursWAL), medianI(floorWAL))
	t.add("WAL bytes inserted (p90: after a checkpoint, a page's first change writes the whole page)",
		percentileI(oursWAL, 0.9), percentileI(floorWAL, 0.9))
	t.add("WAL flushes (fdatasync) per delete, server-wide over the first pass", fmt.Sprintf("%.2f", float64(w1.syncs-w0.syncs)/float64(deletes)), "")
	t.note("Bytes are the server's WAL insert position before and after each delete, straight to PostgreSQL in an explicit transaction; other sessions writing at the same moment would show as outliers above the median. pg_stat_wal counts flushes for the whole server: each delete commits once, and group commit lets concurrent commits share one.")
	t.print()
}

// walLSN is the server's WAL insert position, in bytes.
func (e *env) walLSN() int64 {
	var n int64
	if err := e.Pool.QueryRow(context.Background(), `SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&n); err != nil {
		e.tb.Fatal(err)
	}
	return n
}

func percentileI(v []int64, q float64) int64 {
	ds := make([]time.Duration, len(v))
	for i, x := range v {
		ds[i] = time.Duration(x)
	}
	return int64(percentile(ds, q))
}

// commitTime runs ours (or the floor's) statements for f in an explicit
// transaction straight to the server and returns how long the COMMIT
// took.
func (e *env) commitTime(pool *pgxpool.Pool, f fixture, ours bool) time.Duration {
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		e.tb.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	if ours {
		var raw []byte
		if _, err := tx.Exec(ctx, `SELECT set_config('statement_timeout', '10000', true), set_config('lock_timeout', '5000', true)`); err != nil {
			e.tb.Fatal(err)
		}
		if err := tx.QueryRow(ctx, `SELECT thread_delete.delete_threads_v1($1::uuid[], $2::uuid, NULL, NULL, NULL)`,
			[]string{f.threads[0]}, f.owner).Scan(&raw); err != nil {
			e.tb.Fatal(err)
		}
	} else {
		for _, sql := range []string{`DELETE FROM public.agent_runs WHERE thread_id = $1`,
			`DELETE FROM public.documents WHERE thread_id = $1`, `DELETE FROM public.threads WHERE thread_id = $1`} {
			if _, err := tx.Exec(ctx, sql, f.threads[0]); err != nil {
				e.tb.Fatal(err)
			}
		}
	}
	start := time.Now()
	if err := tx.Commit(ctx); err != nil {
		e.tb.Fatal(err)
	}
	return time.Since(start)
}

// The CPU profile: profileDeletes in-process handler deletes, straight to
// PostgreSQL and Redis (no proxy goroutines in the process), sampled at
// profileHz.
const (
	profileDeletes = 1000
	// profileHz is as often as Linux can sample a thread's CPU time: its
	// per-thread CPU timers fire on the kernel tick (250 Hz here). The
	// default, 100 Hz, gives too few samples; StartCPUProfile keeps a rate
	// set before it and says so on stderr.
	profileHz = 250
)

// cpuCategories attribute a profile sample to the first category whose
// marker is among its frames, in this order.
var cpuCategories = []struct{ name, marker, also string }{
	{"PostgreSQL: JSON decode of the function's summary", "postgres.(*Store).Delete", "encoding/json."},
	{"PostgreSQL: pgx (encode, send, receive, decode)", "postgres.(*Store).Delete", ""},
	{"Redis: go-redis (encode, send, receive)", "redis.(*Cache).Apply", ""},
	{"JWT check", "auth.(*Authenticator).Authenticate", ""},
	{"log line", "logExchange", ""},
	{"response body", "apigw.jsonResponse", ""},
	{"handler, the rest", "apigw.(*Handler).Handle", ""},
	{"GC in the background", "runtime.gcBgMarkWorker", ""},
	{"scheduler and network poller (waking up for replies)", "runtime.schedule", ""},
	{"scheduler and network poller (waking up for replies)", "runtime.netpoll", ""},
}

// cpuProfile attributes the Go side's CPU to its parts, two ways. The
// request runs on one OS thread (runtime.LockOSThread), whose own CPU clock
// (CLOCK_THREAD_CPUTIME_ID) is read around each part of the handler: the
// JWT check, the PostgreSQL call (pgx and the summary's decoding), the
// Redis call, and the rest (ids, contexts, response body, log line). The
// process's CPU beyond that thread is the network poller, the GC and the
// services' client goroutines. A CPU profile of the same requests splits
// the parts further by call stack.
func (e *env) cpuProfile(b *testing.B) {
	ctx := context.Background()
	h := e.handler(direct)
	d := h.Deleter.(*threads.Deleter)
	store, cache := &timedStore{Store: d.Store}, &timedCache{Cache: d.Cache}
	d.Store, d.Cache = store, cache
	authn := &timedAuth{Authenticator: h.Auth}
	h.Auth = authn
	fixtures := e.seedN(latencyWarmup+profileDeletes, typical)
	evs := make([]apigwEvent, len(fixtures))
	for i, f := range fixtures {
		evs[i] = e.event(f.threads[0], f.owner)
	}
	e.analyze()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var parts [4]time.Duration // JWT, PostgreSQL, Redis, the rest
	handle := func(ev apigwEvent, count bool) {
		c0 := threadCPU()
		resp, _ := h.Handle(ctx, ev.APIGatewayV2HTTPRequest)
		total := threadCPU() - c0
		if resp.StatusCode != 200 {
			b.Fatalf("status %d: %s", resp.StatusCode, resp.Body)
		}
		if count {
			parts[0] += authn.cpu
			parts[1] += store.cpu
			parts[2] += cache.cpu
			parts[3] += total - authn.cpu - store.cpu - cache.cpu
		}
	}
	for _, ev := range evs[:latencyWarmup] {
		handle(ev, false)
	}
	evs = evs[latencyWarmup:]

	path := filepath.Join(b.TempDir(), "cpu.pprof")
	out, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	// StartCPUProfile keeps a rate set before it (and says so on stderr).
	runtime.SetCPUProfileRate(profileHz)
	cpu0 := processCPU()
	if err := pprof.StartCPUProfile(out); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for _, ev := range evs {
		handle(ev, true)
	}
	wall := time.Since(start)
	pprof.StopCPUProfile()
	cpu := processCPU() - cpu0
	out.Close()

	per := func(d time.Duration) string {
		return fmt.Sprintf("%.0f µs", float64(d)/float64(len(evs))/float64(time.Microsecond))
	}
	t := newTable(fmt.Sprintf("The Go side: CPU per delete by part (in-process handler, %d deletes straight to the services)", len(evs)),
		"part", "CPU per delete")
	var own time.Duration
	for i, name := range []string{"JWT check", "PostgreSQL call: pgx (encode, send, receive, decode) and the summary's JSON",
		"Redis call: go-redis (encode, send, receive)", "the rest of the handler: ids, contexts, response body, log line"} {
		t.add(name, per(parts[i]))
		own += parts[i]
	}
	t.add("= the request's own thread", per(own))
	t.add("other threads: network poller, GC, client pools' goroutines", per(max(cpu-own, 0)))
	t.add("= the process (getrusage)", per(cpu))
	t.note("Wall time per delete in this pass: %s. Load average at the end: %s.", ms(wall/time.Duration(len(evs))), loadAverage())
	t.print()

	traces, err := exec.Command("go", "tool", "pprof", "-traces", path).Output()
	if err != nil {
		b.Fatalf("go tool pprof: %v", err)
	}
	shares, total := categorize(string(traces))
	samples := total * profileHz / time.Second
	t = newTable(fmt.Sprintf("The Go side by call stack (CPU profile of the same deletes at %d Hz, %d samples)", profileHz, samples),
		"part", "share of samples")
	names := make([]string, 0, len(shares))
	for n := range shares {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(shares[b], shares[a]) })
	for _, n := range names {
		t.add(n, fmt.Sprintf("%.0f%%", 100*float64(shares[n])/float64(max(total, 1))))
	}
	t.note("Linux samples a thread's CPU time on the kernel tick, so the profile holds few samples: read its shares as rough, and the clock readings above as the measure.")
	t.print()
}

// threadCPU is the CPU time (user and system) the calling OS thread has
// used, to the nanosecond (CLOCK_THREAD_CPUTIME_ID brings the running
// thread's account up to date; getrusage would lag by up to a tick).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// timedAuth records the thread CPU of the last Authenticate.
type timedAuth struct {
	apigw.Authenticator
	cpu time.Duration
}

func (a *timedAuth) Authenticate(ctx context.Context, authorization, apiKey string, present bool) (threads.Caller, error) {
	c0 := threadCPU()
	c, err := a.Authenticator.Authenticate(ctx, authorization, apiKey, present)
	a.cpu = threadCPU() - c0
	return c, err
}

// processCPU is the CPU time (user and system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// categorize sums the samples of `go tool pprof -traces` output by
// cpuCategories.
func categorize(traces string) (map[string]time.Duration, time.Duration) {
	shares := map[string]time.Duration{}
	var total time.Duration
	for _, block := range strings.Split(traces, "-----------+") {
		lines := strings.Split(block, "\n")
		var value time.Duration
		var frames []string
		for _, line := range lines {
			f := strings.Fields(line)
			if len(f) == 0 || strings.HasPrefix(f[0], "---") {
				continue
			}
			if value == 0 {
				if v, err := time.ParseDuration(f[0]); err == nil && len(f) >= 2 {
					value = v
					frames = append(frames, f[1])
				}
				continue
			}
			frames = append(frames, f[0])
		}
		if value == 0 {
			continue
		}
		total += value
		stack := strings.Join(frames, " ")
		name := "other (runtime, test harness)"
		for _, c := range cpuCategories {
			if strings.Contains(stack, c.marker) && (c.also == "" || strings.Contains(stack, c.also)) {
				name = c.name
				break
			}
		}
		shares[name] += value
	}
	return shares, total
}
