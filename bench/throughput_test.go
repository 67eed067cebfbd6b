package bench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// throughputDeletes is how many deletes each throughput run makes, shared
// among its function instances.
const throughputDeletes = 600

// throughputRuns are the runs compared: 4 instances is the figure asked
// for, 1 shows how it scales, and 4 on the threads of one project shows the
// project lock at work (deletes within a project are serialised on purpose:
// that is what makes the last-thread decision race-free).
var throughputRuns = []struct {
	instances   int
	sameProject bool
}{{1, false}, {4, false}, {4, true}}

// benchThroughput runs function instances concurrently — each a Deleter
// with a pool of one connection and a Redis client of its own, as separate
// Lambda environments would be — straight to PostgreSQL and Redis, and
// finds what bounds the rate: the CPU used by PostgreSQL backends, by the Go
// process and by Redis (from /proc), and what the instances' backends were
// doing (sampled from pg_stat_activity: on CPU, waiting on a lock, on WAL
// I/O, or idle waiting for the Go side).
func benchThroughput(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	t := newTable(fmt.Sprintf("Throughput: %d deletes of 1 thread (%d messages, %d runs, %d vector rows) each, function instances in one process, direct",
		throughputDeletes, typical.messages, typical.runs, typical.docs),
		"instances", "threads of", "deletes/s", "p50", "p99", "machine CPU busy", "instances' PG backends", "Go process", "redis-server", "everything else", "lock waits")
	states := newTable("What the instances' PostgreSQL backends were doing (pg_stat_activity, sampled every 5 ms)",
		"instances", "threads of", "state", "share of samples")
	for _, run := range throughputRuns {
		r := e.throughput(run.instances, run.sameProject)
		where := "a project each"
		if run.sameProject {
			where = "one project"
		}
		lock := 0.0
		rest := 0.0
		for _, s := range r.states {
			if strings.HasPrefix(s.name, "active: waiting on Lock") {
				lock += s.share
			}
			if s.share < 0.01 {
				rest += s.share
				continue
			}
			states.add(run.instances, where, s.name, fmt.Sprintf("%.0f%%", 100*s.share))
		}
		if rest > 0 {
			states.add(run.instances, where, "anything else (each < 1%)", fmt.Sprintf("%.1f%%", 100*rest))
		}
		t.add(run.instances, where, fmt.Sprintf("%.0f", r.rate), ms(r.p50), ms(r.p99),
			cores(r.machine, r.elapsed), cores(r.backends, r.elapsed), cores(r.goProc, r.elapsed),
			cores(r.redis, r.elapsed), cores(max(r.machine-r.backends-r.goProc-r.redis, 0), r.elapsed),
			fmt.Sprintf("%.0f%%", 100*lock))
		if run.instances == 4 && !run.sameProject {
			b.ReportMetric(r.rate, "deletes/s")
			t.note("Bound (4 instances, a project each): the machine's %d cores were %.0f%% busy, %.0f%% of that in the instances' PostgreSQL backends (%.1f ms of backend CPU per delete) and %.0f%% in the Go process; lock waits %.0f%% of backend samples.",
				runtime.NumCPU(), 100*float64(r.machine)/float64(r.elapsed)/float64(runtime.NumCPU()),
				100*float64(r.backends)/float64(max(r.machine, 1)), float64(r.backends)/float64(time.Millisecond)/float64(throughputDeletes),
				100*float64(r.goProc)/float64(max(r.machine, 1)), 100*lock)
		}
	}
	t.note("CPU columns are cores used on average over the run (this machine has %d). Lock waits: share of backend samples waiting on a heavyweight lock.", runtime.NumCPU())
	t.print()
	states.print()
}

// throughputRun is what one run measured.
type throughputRun struct {
	rate                             float64 // deletes per second
	p50, p99, elapsed                time.Duration
	machine, backends, goProc, redis time.Duration // CPU time used during the run
	states                           []stateShare
}

type stateShare struct {
	name  string
	share float64
}

// job is one delete: a thread and its owner.
type job struct{ owner, thread string }

// throughput makes throughputDeletes deletes with k concurrent instances,
// of threads in a project each or all in one project.
func (e *env) throughput(k int, sameProject bool) throughputRun {
	ctx := context.Background()
	var jobs []job
	if sameProject {
		// One thread more than deleted stays, so the project never goes.
		f := e.seed(shape{threads: throughputDeletes + k + 1, messages: typical.messages, runs: typical.runs, docs: typical.docs})
		for _, t := range f.threads[:throughputDeletes+k] {
			jobs = append(jobs, job{f.owner, t})
		}
	} else {
		for _, f := range e.seedN(throughputDeletes+k, typical) {
			jobs = append(jobs, job{f.owner, f.threads[0]})
		}
	}
	e.analyze()
	instances := make([]*threads.Deleter, k)
	backends := make([]int, k)
	for i := range instances {
		d := e.deleter(direct)
		j := jobs[throughputDeletes+i]
		e.remove(d, j.owner, j.thread) // connect
		pool := d.Store.(*postgres.Store).Pool
		if err := pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backends[i]); err != nil {
			e.tb.Fatal(err)
		}
		instances[i] = d
	}
	work := make(chan job, throughputDeletes)
	for _, j := range jobs[:throughputDeletes] {
		work <- j
	}
	close(work)

	stopSampling := e.sampleStates(backends)
	redisPids := pidsByComm("redis-server")
	busy0, _ := machineCPU()
	go0, be0, rd0 := cpuOf([]int{os.Getpid()}), cpuOf(backends), cpuOf(redisPids)
	start := time.Now()

	var mu sync.Mutex
	var took []time.Duration
	var failure error
	var wg sync.WaitGroup
	for _, d := range instances {
		wg.Go(func() {
			for j := range work {
				t0 := time.Now()
				err := attempt(d, j.owner, j.thread)
				dt := time.Since(t0)
				mu.Lock()
				took = append(took, dt)
				if err != nil && failure == nil {
					failure = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	elapsed := time.Since(start)
	busy1, _ := machineCPU()
	r := throughputRun{
		rate:     float64(throughputDeletes) / elapsed.Seconds(),
		p50:      percentile(took, 0.5),
		p99:      percentile(took, 0.99),
		elapsed:  elapsed,
		machine:  busy1 - busy0,
		goProc:   cpuOf([]int{os.Getpid()}) - go0,
		backends: cpuOf(backends) - be0,
		redis:    cpuOf(redisPids) - rd0,
		states:   stopSampling(),
	}
	if failure != nil {
		e.tb.Fatalf("throughput with %d instances: %v", k, failure)
	}
	return r
}

// sampleStates polls pg_stat_activity for the given backends until the
// returned function is called, which returns the share of samples in each
// state, largest first.
func (e *env) sampleStates(pids []int) func() []stateShare {
	ctx, cancel := context.WithCancel(context.Background())
	counts := map[string]int{}
	total := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			rows, err := e.Pool.Query(ctx, `
				SELECT CASE
				         WHEN state = 'idle' THEN 'idle: waiting for the Go side (ClientRead)'
				         WHEN wait_event_type IS NULL THEN 'active: on CPU'
				         ELSE 'active: waiting on ' || wait_event_type || ' ' || wait_event
				       END
				  FROM pg_stat_activity WHERE pid = ANY ($1)`, pids)
			if err != nil {
				continue // cancelled at the end
			}
			for rows.Next() {
				var s string
				if rows.Scan(&s) == nil {
					counts[s]++
					total++
				}
			}
			rows.Close()
		}
	}()
	return func() []stateShare {
		cancel()
		<-done
		var out []stateShare
		for s, n := range counts {
			out = append(out, stateShare{s, float64(n) / float64(max(total, 1))})
		}
		slices.SortFunc(out, func(a, b stateShare) int { return cmp.Compare(b.share, a.share) })
		return out
	}
}

// cores formats CPU time used over elapsed as a number of cores.
func cores(cpu, elapsed time.Duration) string {
	return fmt.Sprintf("%.2f", float64(cpu)/float64(elapsed))
}
