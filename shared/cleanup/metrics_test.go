package cleanup_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/metrics"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

const testNamespace = "Test/ThreadDelete"

// emf is what CloudWatch extracts from one log line.
type emf struct {
	dims   map[string]string
	values map[string][]float64
}

// metricLines extracts the metrics of every line whose message is msg,
// after checking each datum against the catalog and the namespace.
func metricLines(t *testing.T, l *testenv.LogBuffer, msg string) []emf {
	t.Helper()
	var out []emf
	for _, rec := range l.Lines(t) {
		if rec.Message != msg {
			continue
		}
		line := string(rec.Raw)
		ds, err := metrics.Extract(rec.Raw)
		if err != nil {
			t.Fatalf("%q line is not valid EMF: %v\n%s", msg, err, line)
		}
		e := emf{dims: map[string]string{}, values: map[string][]float64{}}
		for _, d := range ds {
			if err := d.Conforms(); err != nil {
				t.Error(err)
			}
			if d.Namespace != testNamespace {
				t.Errorf("%s in namespace %q", d.Name, d.Namespace)
			}
			maps.Copy(e.dims, d.Dimensions)
			e.values[d.Name] = d.Values
		}
		out = append(out, e)
	}
	return out
}

// A worker batch writes one metrics line per kind and result it saw: the
// number of jobs, the attempt each claimed job made, and for each sandbox
// torn down the seconds since the delete.
func TestWorkerBatchMetrics(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	log := &testenv.LogBuffer{}
	w.worker.Log, w.worker.Namespace = log.Logger(), testNamespace

	good1, _, _ := w.sandbox(false)
	good2, _, _ := w.sandbox(true)
	w.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '30 seconds' WHERE id = ANY($1::uuid[])`, []string{good1, good2})
	flaky, sbFlaky, _ := w.sandbox(false)
	w.daytona.FailNext(sbFlaky, 1, 500)
	w.Exec(`UPDATE thread_delete.outbox SET attempts = 2 WHERE id = $1`, flaky) // its third attempt
	refused, sbRefused, _ := w.sandbox(false)
	w.daytona.FailNext(sbRefused, 1, 403)
	corrupt := w.outboxRow(cleanup.KindTeardown, map[string]string{"project_id": "p"})
	done, _, _ := w.sandbox(false)
	w.Exec(`UPDATE thread_delete.outbox SET status = 'done' WHERE id = $1`, done)
	repair := w.outboxRow(cleanup.KindRedisWork, threads.CacheWork{ThreadIDs: []string{testenv.NewUUID()}})

	failed := w.worker.Handle(context.Background(), []cleanup.Job{
		job("good1", good1), job("good2", good2), job("flaky", flaky), job("refused", refused),
		job("corrupt", corrupt), job("done", done), job("gone", testenv.NewUUID()), job("bad", "42"),
		{ID: "repair", OutboxID: repair, Kind: cleanup.KindCacheRepair},
	})
	slices.Sort(failed)
	if want := []string{"bad", "flaky", "refused"}; !slices.Equal(failed, want) {
		t.Fatalf("failed %v, want %v", failed, want)
	}

	type want struct {
		jobs      float64
		attempts  []float64
		latencies int
	}
	wants := map[string]want{
		"sandbox_teardown/done":      {2, []float64{1, 1}, 2},
		"sandbox_teardown/failed":    {1, []float64{3}, 0},
		"sandbox_teardown/refused":   {1, []float64{1}, 0},
		"sandbox_teardown/dead":      {1, []float64{1}, 0},
		"sandbox_teardown/duplicate": {1, nil, 0},
		"sandbox_teardown/missing":   {1, nil, 0},
		"sandbox_teardown/invalid":   {1, nil, 0},
		"redis_work/done":            {1, []float64{1}, 0}, // the row's kind, not the message's
	}
	lines := metricLines(t, log, "cleanup jobs")
	if len(lines) != len(wants) {
		t.Fatalf("%d metric lines, want one per kind and result: %d", len(lines), len(wants))
	}
	for _, l := range lines {
		key := l.dims["Kind"] + "/" + l.dims["Result"]
		wt, ok := wants[key]
		if !ok {
			t.Errorf("unexpected line for %s: %+v", key, l)
			continue
		}
		delete(wants, key)
		if got := l.values["Jobs"]; !slices.Equal(got, []float64{wt.jobs}) {
			t.Errorf("%s: Jobs %v, want %v", key, got, wt.jobs)
		}
		got := l.values["Attempts"]
		slices.Sort(got)
		if !slices.Equal(got, wt.attempts) {
			t.Errorf("%s: Attempts %v, want %v", key, got, wt.attempts)
		}
		lat := l.values["TeardownLatency"]
		if len(lat) != wt.latencies {
			t.Errorf("%s: %d latencies, want %d", key, len(lat), wt.latencies)
		}
		for _, s := range lat {
			if s < 30 || s > 90 {
				t.Errorf("%s: teardown latency %vs, want the 30 s since the delete", key, s)
			}
		}
	}
	if len(wants) != 0 {
		t.Errorf("no line for %v", slices.Collect(maps.Keys(wants)))
	}
}

// A sweep writes one line, every sweep, with what it did and the backlog it
// left; done rows past the retention are pruned, the rest kept.
func TestSweepMetricsAndPruning(t *testing.T) {
	t.Parallel()
	c := newCacheSweep(t)
	log := &testenv.LogBuffer{}
	c.sweeper.Log, c.sweeper.Namespace = log.Logger(), testNamespace
	ctx := context.Background()

	overdue, _, _ := c.sandbox(false)
	c.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '46 minutes', next_attempt_at = now() - interval '46 minutes' WHERE id = $1`, overdue)
	exhausted, _, _ := c.sandbox(false)
	c.Exec(`UPDATE thread_delete.outbox SET sends = 20, next_attempt_at = now() - interval '1 second' WHERE id = $1`, exhausted)
	deadBefore := c.outboxRow(cleanup.KindRedisWork, threads.CacheWork{ThreadIDs: []string{testenv.NewUUID()}})
	c.Exec(`UPDATE thread_delete.outbox SET status = 'dead' WHERE id = $1`, deadBefore)
	due := c.pendingWork()
	c.age(due.ID)
	fresh := c.pendingWork() // inside its grace: stays pending
	c.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, done_at)
	        SELECT 'redis_work', '{}', 'done', now() - interval '8 days' FROM generate_series(1, 5)`)
	recent := c.outboxRow(cleanup.KindRedisWork, threads.CacheWork{ThreadIDs: []string{testenv.NewUUID()}})
	c.Exec(`UPDATE thread_delete.outbox SET status = 'done', done_at = now() - interval '6 days' WHERE id = $1`, recent)

	rep, err := c.sweeper.Sweep(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (cleanup.SweepReport{Resent: 1, Dead: 1, CacheDone: 1, Pruned: 5}) {
		t.Fatalf("report %+v", rep)
	}
	if got := c.drain(); !slices.Equal(got, []string{overdue}) {
		t.Fatalf("queue got %v", got)
	}
	if n := c.Count(`SELECT count(*) FROM thread_delete.outbox WHERE status = 'done' AND done_at < now() - interval '7 days'`); n != 0 {
		t.Fatalf("%d old done rows left", n)
	}
	if r := c.row(recent); r.Status != "done" {
		t.Fatalf("a done row inside the retention: %+v", r)
	}
	if r := c.row(fresh.ID); r.Status != "pending" {
		t.Fatalf("fresh Redis work %+v", r)
	}

	lines := metricLines(t, log, "outbox sweep")
	if len(lines) != 1 {
		t.Fatalf("%d sweep lines, want 1", len(lines))
	}
	got := lines[0].values
	if len(lines[0].dims) != 0 {
		t.Errorf("sweep metrics carry dimensions %v, want none", lines[0].dims)
	}
	if age := got["OldestPendingTeardownAge"]; len(age) != 1 || age[0] < 46*60 || age[0] > 47*60 {
		t.Errorf("OldestPendingTeardownAge %v, want the overdue row's 46 minutes", age)
	}
	if age := got["OldestPendingRedisWorkAge"]; len(age) != 1 || age[0] < 0 || age[0] > 60 {
		t.Errorf("OldestPendingRedisWorkAge %v, want the fresh row's few seconds", age)
	}
	delete(got, "OldestPendingTeardownAge")
	delete(got, "OldestPendingRedisWorkAge")
	want := map[string][]float64{
		"PendingTeardowns": {1}, "PendingRedisWork": {1}, "DeadRows": {2},
		"TeardownsResent": {1}, "RowsMarkedDead": {1}, "RedisWorkCompleted": {1}, "RowsPruned": {5},
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("sweep metrics %v\nwant          %v", got, want)
	}

	// A quiet sweep still reports the backlog: the alarms need a value
	// every sweep.
	if _, err := c.sweeper.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	lines = metricLines(t, log, "outbox sweep")
	if len(lines) != 2 || !slices.Equal(lines[1].values["DeadRows"], []float64{2}) || !slices.Equal(lines[1].values["RowsPruned"], []float64{0}) {
		t.Fatalf("second sweep: %+v", lines)
	}
}

// A pruning backlog larger than one sweep's budget is worked off over the
// next sweeps, batch by batch.
func TestSweepPrunesInBoundedBatches(t *testing.T) {
	t.Parallel()
	s := newSweepWorld(t)
	s.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, done_at)
	        SELECT 'redis_work', '{}', 'done', now() - interval '2 hours' FROM generate_series(1, 2500)`)
	bounded := *s.sweeper
	bounded.Retention, bounded.PruneBatchSize, bounded.MaxBatches = time.Hour, 1000, 2
	for i, want := range []int{2000, 500, 0} {
		rep, err := bounded.Sweep(context.Background())
		if err != nil || rep.Pruned != want {
			t.Fatalf("sweep %d: %+v %v, want %d pruned", i+1, rep, err, want)
		}
	}
	if n := s.Count(`SELECT count(*) FROM thread_delete.outbox`); n != 0 {
		t.Fatalf("%d rows left", n)
	}
}

// A prune that fails (here the database refuses every delete of an outbox
// row) fails the sweep visibly, yet the sweep's other work is done and its
// backlog line is still written: the alarms keep their figures.
func TestSweepWhosePruneFailsStillReports(t *testing.T) {
	t.Parallel()
	s := newSweepWorld(t)
	log := &testenv.LogBuffer{}
	s.sweeper.Log, s.sweeper.Namespace = log.Logger(), testNamespace
	s.Exec(`CREATE FUNCTION thread_delete.refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
	        BEGIN RAISE EXCEPTION 'outbox deletes refused for this test'; END $$`)
	s.Exec(`CREATE TRIGGER refuse_delete BEFORE DELETE ON thread_delete.outbox FOR EACH ROW EXECUTE FUNCTION thread_delete.refuse_delete()`)
	s.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, done_at) VALUES ('redis_work', '{}', 'done', now() - interval '8 days')`)
	overdue, _, _ := s.sandbox(false)
	s.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '6 minutes' WHERE id = $1`, overdue)

	rep, err := s.sweeper.Sweep(context.Background())
	if err == nil || !strings.Contains(err.Error(), "prune") {
		t.Fatalf("sweep error %v, want the prune's", err)
	}
	if rep.Resent != 1 || rep.Pruned != 0 {
		t.Fatalf("report %+v, want the re-send done and nothing pruned", rep)
	}
	if got := s.drain(); !slices.Equal(got, []string{overdue}) {
		t.Fatalf("queue got %v", got)
	}
	lines := metricLines(t, log, "outbox sweep")
	if len(lines) != 1 || !slices.Equal(lines[0].values["PendingTeardowns"], []float64{1}) || !slices.Equal(lines[0].values["RowsPruned"], []float64{0}) {
		t.Fatalf("sweep lines %+v, want one with the backlog", lines)
	}
	if errs := errorsMentioning(t, log, "outbox prune failed"); len(errs) != 1 {
		t.Fatalf("%d ERROR lines about the prune, want 1", len(errs))
	}
}
