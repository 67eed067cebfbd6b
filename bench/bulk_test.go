package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

// bulkCase is one way of deleting n threads of one account.
type bulkCase struct {
	name  string
	n     int  // threads deleted
	bulk  bool // one POST /threads/bulk-delete, or n sequential DELETEs
	floor bool // the physical floor's in-process part instead (floor_test.go)
	reps  int
}

// bulkCases are the requests compared (issue 10): bulk deletes of 1, 10 and
// 100 threads against 10 and 100 sequential single deletes, and a single
// delete, the unit of the goal.
var bulkCases = []bulkCase{
	{"one DELETE /threads/{id}", 1, false, false, 20},
	{"bulk delete of 1", 1, true, false, 20},
	{"bulk delete of 10", 10, true, false, 10},
	{"10 sequential DELETEs", 10, false, false, 10},
	{"bulk delete of 100", 100, true, false, 5},
	{"100 sequential DELETEs", 100, false, false, 5},
	{"floor for 100 (in-process part; add the invoke floor)", 100, true, true, 5},
	{"floor for 1 (in-process part; add the invoke floor)", 1, true, true, 20},
}

// goalBulkRatio: a bulk delete of 100 takes at most this many times a
// single delete (issue 16).
const goalBulkRatio = 3.0

// benchBulk measures multi-select against one delete per thread, as
// deployed (the function under aws-lambda-rie), with linkDelay added to
// each PostgreSQL reply as in BenchmarkLatency. Every thread (10 messages,
// 2 agent runs, 2 vector rows) is one of two in a project of its own, all
// projects of one account: a user cleaning up their chats. The cases are
// interleaved repetition by repetition.
func benchBulk(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	fn := testenv.StartLambda(b, functionBinary(b), e.functionEnv())
	owner := e.PersonalAccount()
	token := testenv.Token(owner)

	fl := e.floor(viaProxy)
	ctx := context.Background()

	// Fixtures and events first, so that nothing but the requests is timed.
	type rep struct {
		events  [][]byte
		threads []string // for the floor
	}
	reps := make([][]rep, len(bulkCases))
	maxReps := 0
	for i, c := range bulkCases {
		maxReps = max(maxReps, c.reps)
		for range c.reps {
			fs := e.seedProjects(owner, c.n, typical)
			ids := make([]string, len(fs))
			for k, f := range fs {
				ids[k] = f.threads[0]
			}
			r := rep{threads: ids}
			if c.floor {
				// the floor needs no event
			} else if c.bulk {
				r.events = [][]byte{bulkEvent(b, ids, token)}
			} else {
				for _, id := range ids {
					r.events = append(r.events, testenv.DeleteEvent(b, id, token))
				}
			}
			reps[i] = append(reps[i], r)
		}
	}
	e.analyze()
	// Warm-up: connections are opened once per environment.
	warm := e.seedProjects(owner, 1, typical)
	invokeWant(b, fn, testenv.DeleteEvent(b, warm[0].threads[0], token), 200)

	e.pgProxy.SetReplyDelay(linkDelay)
	defer e.pgProxy.SetReplyDelay(0)
	times := make([][]time.Duration, len(bulkCases))
	tripsOf := make([]tripRange, len(bulkCases))
	for r := range maxReps {
		for k := range bulkCases {
			i := (r + k) % len(bulkCases)
			if r >= bulkCases[i].reps {
				continue
			}
			before := e.trips()
			start := time.Now()
			if bulkCases[i].floor {
				if err := fl.deleteMany(ctx, owner, reps[i][r].threads); err != nil {
					b.Fatal(err)
				}
			}
			for _, ev := range reps[i][r].events {
				invokeWant(b, fn, ev, 200)
			}
			times[i] = append(times[i], time.Since(start))
			tripsOf[i].add(e.trips().since(before))
		}
	}

	t := newTable(fmt.Sprintf("Bulk delete against sequential single deletes (under aws-lambda-rie, %s added per PostgreSQL reply)", ms(linkDelay)),
		"request", "threads", "repetitions", "p50", "max", "per thread", "PostgreSQL round trips", "Redis round trips")
	p50 := make([]time.Duration, len(bulkCases))
	for i, c := range bulkCases {
		p50[i] = median(times[i])
		t.add(c.name, c.n, c.reps, ms(p50[i]), ms(slicesMax(times[i])), ms(p50[i]/time.Duration(c.n)),
			span(tripsOf[i].lo.pg, tripsOf[i].hi.pg), span(tripsOf[i].lo.redis, tripsOf[i].hi.redis))
	}
	single, bulk100 := p50[0], p50[4]
	r := float64(bulk100) / float64(single)
	t.note("Goal: a bulk delete of 100 takes at most %.0f× a single delete: %s (%.1f×; %s against %s).", goalBulkRatio, verdict(r <= goalBulkRatio), r, ms(bulk100), ms(single))
	t.note("The floor removes the same rows as the bulk delete in one pipelined transaction of three DELETEs and one Redis pipeline, in-process: for 100 threads it takes %.1f× its own time for 1 thread, so no implementation can bring 100 threads within %.0f× of one here; ours for 100 takes %.2f× the floor's in-process part for 100.",
		float64(p50[6])/float64(p50[7]), goalBulkRatio, float64(bulk100)/float64(p50[6]))
	t.note("100 threads one by one take %.0f× as long as in one bulk request. Load average at the end: %s.", float64(p50[5])/float64(bulk100), loadAverage())
	t.print()
	b.ReportMetric(r, "bulk100/single")
}

// bulkEvent is events/bulk-delete.json asking to delete ids with the bearer
// token.
func bulkEvent(tb testing.TB, ids []string, token string) []byte {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(tb), "events", "bulk-delete.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var ev map[string]any
	if err := json.Unmarshal(raw, &ev); err != nil {
		tb.Fatal(err)
	}
	body, _ := json.Marshal(map[string][]string{"thread_ids": ids})
	ev["body"] = string(body)
	headers := ev["headers"].(map[string]any)
	headers["authorization"] = "Bearer " + token
	headers["content-length"] = fmt.Sprint(len(body))
	out, _ := json.Marshal(ev)
	return []byte(strings.ReplaceAll(string(out), testenv.SampleToken, token))
}

// invokeWant invokes fn with event and fails unless it answered want.
func invokeWant(tb testing.TB, fn *testenv.Lambda, event []byte, want int) {
	tb.Helper()
	raw := fn.Invoke(tb, event)
	var resp struct {
		StatusCode int    `json:"statusCode"`
		Body       string `json:"body"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil || resp.StatusCode != want {
		tb.Fatalf("invoke: status %d, want %d: %s\nfunction output:\n%s", resp.StatusCode, want, raw, fn.Logs())
	}
	if strings.Contains(resp.Body, `"not_found":["`) || strings.Contains(resp.Body, `"forbidden":["`) {
		tb.Fatalf("bulk delete left threads undeleted: %s", resp.Body)
	}
}
