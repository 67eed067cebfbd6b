package bench

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// scaleSizes are the thread lengths measured, and scaleReps how many
// threads of each length are deleted (the median is reported).
var scaleSizes = []int{1_000, 10_000, 100_000}

const scaleReps = 3

// benchScale deletes threads of 1k, 10k and 100k messages (with n/10
// vector-store chunks and n/100 agent runs) through the service's Deleter,
// straight to PostgreSQL and Redis, and records time and the Go heap: the
// delete never loads rows into the client, so what it allocates must not
// grow with the thread.
func benchScale(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	d := e.deleter(direct)
	warm := e.seed(typical) // opens the connections
	e.remove(d, warm.owner, warm.threads[0])

	t := newTable(fmt.Sprintf("Thread size: delete through the Deleter, direct (median of %d)", scaleReps),
		"messages", "docs", "runs", "time", "per message", "time growth / size growth", "Go bytes allocated", "Go heap objects allocated")
	var prev time.Duration
	var times []time.Duration
	var allocs []uint64
	for i, n := range scaleSizes {
		var took []time.Duration
		var bytes, objects []uint64
		for range scaleReps {
			f, sibling := e.bigThread(n)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			dt, res := e.remove(d, f.owner, f.threads[0])
			runtime.ReadMemStats(&after)
			if res.Messages != int64(n) {
				b.Fatalf("%d messages reported, want %d", res.Messages, n)
			}
			e.mustBeGone(f.threads[0])
			e.siblingIntact(sibling)
			took = append(took, dt)
			bytes = append(bytes, after.TotalAlloc-before.TotalAlloc)
			objects = append(objects, after.Mallocs-before.Mallocs)
		}
		m := median(took)
		growth := "—"
		if i > 0 {
			growth = fmt.Sprintf("%.1f× / %d×", float64(m)/float64(prev), n/scaleSizes[i-1])
		}
		t.add(n, max(n/10, 1), max(n/100, 1), ms(m), perMessage(m, n),
			growth, kb(medianU(bytes)), medianU(objects))
		prev = m
		times = append(times, m)
		allocs = append(allocs, medianU(bytes))
	}
	last := len(scaleSizes) - 1
	linear := true
	for i := 1; i <= last; i++ {
		linear = linear && float64(times[i])/float64(times[i-1]) <= float64(scaleSizes[i]/scaleSizes[i-1])
	}
	t.note("Goal: time grows no worse than linearly: %s.", verdict(linear))
	t.note("Goal: %d messages in under 2 s: %s (%s).", scaleSizes[last], verdict(times[last] < 2*time.Second), ms(times[last]))
	t.note("Goal: client memory flat (allocations at %d messages within 2× of those at %d): %s.",
		scaleSizes[last], scaleSizes[0], verdict(allocs[last] <= 2*allocs[0]))
	t.print()
	b.ReportMetric(float64(times[last])/float64(time.Millisecond), "ms-100k-messages")
}

func kb(n uint64) string { return fmt.Sprintf("%.1f KB", float64(n)/1024) }

func medianU(v []uint64) uint64 {
	ds := make([]time.Duration, len(v))
	for i, x := range v {
		ds[i] = time.Duration(x)
	}
	return uint64(median(ds))
}
