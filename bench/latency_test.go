package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/apigw"
	"github.com/kortix-ai/thread-delete/shared/auth"
)

// The latency comparison (issue 16's table): measured deletes per
// implementation after a warm-up that opens every connection (a
// per-environment cost, not a per-request one), with linkDelay added to
// each chunk PostgreSQL sends back (RDS in another availability zone).
// Redis is reached through a proxy too, without added delay.
const (
	latencyIterations = 200
	latencyWarmup     = 10
	linkDelay         = time.Millisecond
)

// Goals of issue 16: our p50 at most 1.25 × the floor's, and at least 5 ×
// lower than the original's.
const (
	goalFloorRatio    = 1.25
	goalOriginalRatio = 5.0
)

// contender is one implementation measured in the latency comparison.
type contender struct {
	name string
	// run performs one request on fixture f (nil for requests that need
	// none) and fails unless it had the expected outcome.
	run   func(f *fixture) error
	needs bool // needs a fresh fixture per request
	times []time.Duration
	trips tripRange
}

// tripRange is the lowest and highest round-trip counts seen.
type tripRange struct {
	seen   bool
	lo, hi trips
}

func (r *tripRange) add(n trips) {
	if !r.seen {
		r.lo, r.hi, r.seen = n, n, true
	}
	r.lo = trips{min(r.lo.pg, n.pg), min(r.lo.redis, n.redis), min(r.lo.sqs, n.sqs)}
	r.hi = trips{max(r.hi.pg, n.pg), max(r.hi.redis, n.redis), max(r.hi.sqs, n.sqs)}
}

// benchLatency measures, in one run and through the same proxies, with the
// implementations interleaved request by request (so that drift on this
// shared machine hits all of them alike), 200 warm deletes each of a
// non-last thread of 10 messages, 2 agent runs and 2 vector-store rows:
//
//   - the original's call sequence, replayed in-process (original_test.go);
//   - ours: the built delete-thread binary under aws-lambda-rie, invoked
//     with an API Gateway event carrying a JWT, exactly as deployed;
//   - ours in-process: the same handler (JWT check, delete, Redis, log
//     line) called directly, which shows what the runtime emulator adds;
//   - the physical floor: the same rows removed by one pipelined implicit
//     transaction plus one Redis pipeline, in-process (floor_test.go), plus
//     the invoke floor of aws-lambda-rie (an invalid id, answered 400
//     before any I/O).
func benchLatency(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	ctx := context.Background()

	fn := testenv.StartLambda(b, functionBinary(b), e.functionEnv())
	fl, orig, handler := e.floor(viaProxy), e.original(viaProxy), e.handler(viaProxy)
	invalid := testenv.DeleteEvent(b, "not-a-uuid", "x")

	invoke := func(event []byte, want int) error {
		raw := fn.Invoke(b, event)
		var resp struct {
			StatusCode int `json:"statusCode"`
		}
		if err := json.Unmarshal(raw, &resp); err != nil || resp.StatusCode != want {
			return fmt.Errorf("invoke: status %d, want %d: %s", resp.StatusCode, want, raw)
		}
		return nil
	}
	floorIn := &contender{name: "floor, in-process part: 3 DELETEs + commit in one round trip, one Redis pipeline", needs: true,
		run: func(f *fixture) error { return fl.delete(ctx, f.owner, f.threads[0]) }}
	rie400 := &contender{name: "floor, invoke part: aws-lambda-rie invoke answered 400 before any I/O",
		run: func(*fixture) error { return invoke(invalid, 400) }}
	original := &contender{name: "the original's sequence, replayed in-process", needs: true,
		run: func(f *fixture) error {
			gone, err := orig.delete(ctx, f.threads[0], f.owner)
			if err == nil && gone {
				err = fmt.Errorf("original: project of %s deleted", f.threads[0])
			}
			return err
		}}
	events := map[string][]byte{} // built before they are timed
	oursRIE := &contender{name: "ours: delete-thread under aws-lambda-rie", needs: true,
		run: func(f *fixture) error { return invoke(events[f.threads[0]], 200) }}
	oursIn := &contender{name: "ours: the same handler in-process (no runtime emulator)", needs: true,
		run: func(f *fixture) error {
			var ev apigwEvent
			if err := json.Unmarshal(events[f.threads[0]], &ev.APIGatewayV2HTTPRequest); err != nil {
				return err
			}
			resp, _ := handler.Handle(ctx, ev.APIGatewayV2HTTPRequest)
			if resp.StatusCode != 200 {
				return fmt.Errorf("in-process: status %d: %s", resp.StatusCode, resp.Body)
			}
			return nil
		}}
	contenders := []*contender{floorIn, rie400, original, oursRIE, oursIn}

	n := latencyWarmup + latencyIterations
	fixtures := map[*contender][]fixture{}
	for _, c := range contenders {
		if c.needs {
			fixtures[c] = e.seedN(n, typical)
		}
	}
	for _, c := range []*contender{oursRIE, oursIn} {
		for _, f := range fixtures[c] {
			events[f.threads[0]] = testenv.DeleteEvent(b, f.threads[0], testenv.Token(f.owner))
		}
	}
	e.analyze()

	e.pgProxy.SetReplyDelay(linkDelay)
	defer e.pgProxy.SetReplyDelay(0)
	for i := range n {
		for k := range contenders {
			c := contenders[(i+k)%len(contenders)]
			var f *fixture
			if c.needs {
				f = &fixtures[c][i]
			}
			before := e.trips()
			start := time.Now()
			err := c.run(f)
			took := time.Since(start)
			if err != nil {
				b.Fatalf("%s: %v\nfunction output:\n%s", c.name, err, fn.Logs())
			}
			if i >= latencyWarmup {
				c.times = append(c.times, took)
				c.trips.add(e.trips().since(before))
			}
		}
	}
	for _, c := range contenders {
		if c.needs {
			e.mustBeGone(fixtures[c][n-1].threads[0])
		}
	}

	floor50 := median(floorIn.times) + median(rie400.times)
	floor90 := percentile(floorIn.times, 0.9) + percentile(rie400.times, 0.9)
	t := newTable(fmt.Sprintf("Latency: %d warm deletes of a non-last thread (10 messages, 2 runs, 2 vector rows), %s added per PostgreSQL reply",
		latencyIterations, ms(linkDelay)),
		"what", "p50", "p90", "PostgreSQL round trips", "Redis round trips")
	row := func(c *contender) {
		t.add(c.name, ms(median(c.times)), ms(percentile(c.times, 0.9)),
			span(c.trips.lo.pg, c.trips.hi.pg), span(c.trips.lo.redis, c.trips.hi.redis))
	}
	row(original)
	row(oursRIE)
	row(oursIn)
	row(floorIn)
	row(rie400)
	t.add("physical floor = the two rows above", ms(floor50), ms(floor90), "1", "1")
	ours50 := median(oursRIE.times)
	fr := float64(ours50) / float64(floor50)
	or := float64(median(original.times)) / float64(ours50)
	t.note("project / floor (p50): %.2f (goal ≤ %.2f: %s); p90: %.2f.", fr, goalFloorRatio, verdict(fr <= goalFloorRatio),
		float64(percentile(oursRIE.times, 0.9))/float64(floor90))
	t.note("original / project (p50): %.1f× (goal ≥ %.0f×: %s); p90: %.1f×.", or, goalOriginalRatio, verdict(or >= goalOriginalRatio),
		float64(percentile(original.times, 0.9))/float64(percentile(oursRIE.times, 0.9)))
	t.note("Floor percentiles are the sums of its two parts' percentiles. Load average at the end: %s.", loadAverage())
	t.print()
	b.ReportMetric(fr, "floor-ratio")
	b.ReportMetric(or, "original-ratio")
}

// apigwEvent wraps the event type so that the sample event decodes as the
// Lambda runtime decodes it.
type apigwEvent struct{ events.APIGatewayV2HTTPRequest }

// event is the sample API Gateway event asking to delete thread with a
// token of owner's, decoded as the Lambda runtime decodes it.
func (e *env) event(thread, owner string) apigwEvent {
	var ev apigwEvent
	if err := json.Unmarshal(testenv.DeleteEvent(e.tb, thread, testenv.Token(owner)), &ev.APIGatewayV2HTTPRequest); err != nil {
		e.tb.Fatal(err)
	}
	return ev
}

// handler is the delete-thread function's handler, wired as app.DeleteThread
// wires it (HS256 JWTs, audience "authenticated"), in-process: its log line
// is formatted as in Lambda and discarded.
func (e *env) handler(r route) *apigw.Handler {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	a, err := auth.New(auth.Config{HS256Secret: []byte(testenv.JWTSecret), Audience: "authenticated", Logger: log})
	if err != nil {
		e.tb.Fatal(err)
	}
	d := e.deleter(r)
	d.Log = log
	return &apigw.Handler{Auth: a, Deleter: d, Log: log}
}

// functionBinary is the delete-thread binary `make build` leaves.
func functionBinary(tb testing.TB) string {
	bin := filepath.Join(testenv.RepoRoot(tb), "build", "delete-thread", "bootstrap")
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("%s missing: run `make build` first (`make bench` does)", bin)
	}
	return bin
}
