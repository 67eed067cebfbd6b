package bench

import (
	"fmt"
	"testing"
	"time"
)

// Latency samples: enough measured deletes per scenario, delay and
// implementation for a stable p99 (the 2nd slowest of 200), after a warm-up
// that opens the connections (a per-environment cost, not a per-request one).
const (
	latencyIterations = 200
	latencyWarmup     = 10
)

// scenario is one kind of delete measured against the original.
type scenario struct {
	name  string
	shape shape
}

var scenarios = []scenario{
	{"delete 1 of 2 threads", typical},
	{"delete the last thread (project + sandbox go)", lastThread},
}

// benchLatency measures our delete (threads.Deleter with the PostgreSQL
// store, the Redis cache and the SQS publisher) against the replay of the
// original's calls, on the same database, Redis and queue, both through the
// same proxies, with 1 ms (RDS or ElastiCache in another AZ) and 0 ms added
// per round trip. Each delete gets a freshly seeded project; the two
// implementations alternate, so that drift on the machine hits both alike.
func benchLatency(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	ours, orig := e.deleter(viaProxy), e.original(viaProxy)

	type block struct {
		delay      time.Duration
		sc         scenario
		ours, orig []fixture
	}
	var blocks []block
	n := latencyWarmup + latencyIterations
	for _, delay := range []time.Duration{time.Millisecond, 0} {
		for _, sc := range scenarios {
			blocks = append(blocks, block{delay, sc, e.seedN(n, sc.shape), e.seedN(n, sc.shape)})
		}
	}
	e.analyze()

	t := newTable("Latency: our delete vs a replay of the original's calls (200 deletes each)",
		"scenario", "added per round trip", "ours p50", "ours p99", "original p50", "original p99", "p50 ratio", "p99 ratio")
	var goals []string
	for _, bl := range blocks {
		e.setDelay(bl.delay)
		wantGone := bl.sc.shape.threads == 1
		var ourTimes, origTimes []time.Duration
		for i := range n {
			measureOurs := func() {
				f := bl.ours[i]
				took, res := e.remove(ours, f.owner, f.threads[0])
				if gone := len(res.Work.ProjectIDs) > 0; gone != wantGone {
					b.Fatalf("ours: project deleted = %v, want %v", gone, wantGone)
				}
				if i >= latencyWarmup {
					ourTimes = append(ourTimes, took)
				}
			}
			measureOriginal := func() {
				f := bl.orig[i]
				took, gone := e.replay(orig, f.owner, f.threads[0])
				if gone != wantGone {
					b.Fatalf("original: project deleted = %v, want %v", gone, wantGone)
				}
				if i >= latencyWarmup {
					origTimes = append(origTimes, took)
				}
			}
			if i%2 == 0 {
				measureOurs()
				measureOriginal()
			} else {
				measureOriginal()
				measureOurs()
			}
		}
		for _, f := range bl.ours[:3] {
			e.mustBeGone(f.threads[0])
		}
		o50, o99 := percentile(ourTimes, 0.5), percentile(ourTimes, 0.99)
		r50, r99 := percentile(origTimes, 0.5), percentile(origTimes, 0.99)
		t.add(bl.sc.name, delayName(bl.delay), ms(o50), ms(o99), ms(r50), ms(r99), ratio(r50, o50), ratio(r99, o99))
		if bl.delay == time.Millisecond {
			goals = append(goals, fmt.Sprintf("Goal (1 ms, %s): our p50 at least 5× lower than the original's: %s (%s).",
				bl.sc.name, verdict(r50 >= 5*o50), ratio(r50, o50)))
			b.ReportMetric(float64(r50)/float64(o50), "p50-ratio-1ms-"+shortName(bl.sc))
		}
	}
	e.setDelay(0)
	for _, g := range goals {
		t.note("%s", g)
	}
	t.print()
}

func delayName(d time.Duration) string {
	if d == 0 {
		return "0 ms"
	}
	return d.String()
}

// shortName is a scenario's name in a benchmark metric unit (no spaces).
func shortName(sc scenario) string {
	if sc.shape.threads == 1 {
		return "last"
	}
	return "1of2"
}
