package apigw_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/metrics"
)

// linesOf returns the lines written so far whose message is msg.
func linesOf(t *testing.T, log *testenv.LogBuffer, msg string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, line := range log.Lines(t) {
		if line.Message == msg {
			out = append(out, line.Raw)
		}
	}
	return out
}

const testNamespace = "Test/ThreadDelete"

// requestMetrics returns the metrics of the one "delete threads" line the
// last request wrote, by name, after checking each against the catalog.
func requestMetrics(t *testing.T, log *testenv.LogBuffer) (map[string]float64, map[string]string) {
	t.Helper()
	lines := linesOf(t, log, "delete threads")
	if len(lines) != 1 {
		t.Fatalf("%d request lines, want exactly 1", len(lines))
	}
	ds, err := metrics.Extract(lines[0])
	if err != nil {
		t.Fatalf("request line is not valid EMF: %v\n%s", err, lines[0])
	}
	values := map[string]float64{}
	dims := map[string]string{}
	for _, d := range ds {
		if err := d.Conforms(); err != nil {
			t.Error(err)
		}
		if d.Namespace != testNamespace {
			t.Errorf("%s in namespace %q, want %q", d.Name, d.Namespace, testNamespace)
		}
		if len(d.Values) != 1 {
			t.Errorf("%s has %d values, want 1 per request", d.Name, len(d.Values))
		}
		values[d.Name] = d.Values[0]
		maps.Copy(dims, d.Dimensions)
	}
	return values, dims
}

// Each request's one log line carries its metrics: what CloudWatch extracts
// from it matches what the request did, in the database, the queue and
// Redis.
func TestRequestLineIsItsMetrics(t *testing.T) {
	s := newStack(t, stackOptions{})
	down := newStack(t, stackOptions{queueURL: "http://127.0.0.1:1/000000000000/nowhere"})
	for _, st := range []*stack{s, down} {
		st.handler.Namespace = testNamespace
	}

	type want struct {
		status int
		dims   map[string]string
		values map[string]float64
	}
	zero := func(over map[string]float64) map[string]float64 {
		m := map[string]float64{"Requests": 1, "ThreadsDeleted": 0, "ProjectsDeleted": 0, "TeardownsQueued": 0,
			"TeardownsDeferred": 0, "RedisWorkInline": 0, "RedisWorkDeferred": 0}
		maps.Copy(m, over)
		return m
	}
	tests := []struct {
		name string
		st   *stack
		run  func(t *testing.T, st *stack) (int, func(t *testing.T))
		want want
	}{
		{
			name: "last thread with a sub-agent thread and a sandbox",
			st:   s,
			run: func(t *testing.T, st *stack) (int, func(t *testing.T)) {
				owner := st.PersonalAccount()
				th := st.Thread(owner, st.Project(owner, st.Sandbox(owner, "sb-metrics"), ""), "")
				st.Thread(owner, "", th)
				resp := st.delete(t, th, bearer(owner))
				return resp.StatusCode, func(t *testing.T) {
					if msgs := st.receive(t, 5); len(msgs) != 1 || msgs[0].SandboxID != "sb-metrics" {
						t.Fatalf("queue got %+v, want the one teardown the metrics count", msgs)
					}
				}
			},
			want: want{200, map[string]string{"Endpoint": "delete", "Outcome": "deleted"},
				zero(map[string]float64{"ThreadsDeleted": 2, "ProjectsDeleted": 1, "TeardownsQueued": 1, "RedisWorkInline": 1})},
		},
		{
			name: "bulk: two deleted, one forbidden",
			st:   s,
			run: func(t *testing.T, st *stack) (int, func(t *testing.T)) {
				owner, other := st.PersonalAccount(), st.PersonalAccount()
				p := st.Project(owner, "", "")
				a, b, c := st.Thread(owner, p, ""), st.Thread(owner, p, ""), st.Thread(other, "", "")
				st.Thread(owner, p, "") // keeps the project
				resp := st.bulk(t, fmt.Sprintf(`{"thread_ids":[%q,%q,%q]}`, a, b, c), bearer(owner))
				return resp.StatusCode, func(t *testing.T) {
					if n := st.Count(`SELECT count(*) FROM threads WHERE thread_id = ANY($1::uuid[])`, []string{a, b, c}); n != 1 {
						t.Fatalf("%d of the three threads left, want 1 (the forbidden one)", n)
					}
				}
			},
			want: want{200, map[string]string{"Endpoint": "bulk_delete", "Outcome": "processed"},
				zero(map[string]float64{"ThreadsDeleted": 2, "RedisWorkInline": 1})},
		},
		{
			name: "Redis down: the work is deferred to the sweeper",
			st:   s,
			run: func(t *testing.T, st *stack) (int, func(t *testing.T)) {
				owner := st.PersonalAccount()
				th := st.Thread(owner, "", "")
				st.rdProxy.Refuse(true)
				st.rdProxy.CutAll()
				defer st.rdProxy.Refuse(false)
				resp := st.delete(t, th, bearer(owner))
				return resp.StatusCode, func(t *testing.T) {
					if n := st.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'redis_work' AND status = 'pending' AND payload->'thread_ids' ? $1`, th); n != 1 {
						t.Fatalf("%d pending Redis work rows, want 1", n)
					}
				}
			},
			want: want{200, map[string]string{"Endpoint": "delete", "Outcome": "deleted"},
				zero(map[string]float64{"ThreadsDeleted": 1, "RedisWorkDeferred": 1})},
		},
		{
			name: "queue down: the teardown is deferred to the sweeper",
			st:   down,
			run: func(t *testing.T, st *stack) (int, func(t *testing.T)) {
				owner := st.PersonalAccount()
				th := st.Thread(owner, st.Project(owner, st.Sandbox(owner, "sb-down"), ""), "")
				resp := st.delete(t, th, bearer(owner))
				return resp.StatusCode, func(t *testing.T) {
					if n := st.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'sandbox_teardown' AND status = 'pending'`); n != 1 {
						t.Fatalf("%d pending teardowns, want 1", n)
					}
				}
			},
			want: want{200, map[string]string{"Endpoint": "delete", "Outcome": "deleted"},
				zero(map[string]float64{"ThreadsDeleted": 1, "ProjectsDeleted": 1, "TeardownsDeferred": 1, "RedisWorkInline": 1})},
		},
		{
			name: "no such thread",
			st:   s,
			run: func(t *testing.T, st *stack) (int, func(t *testing.T)) {
				return st.delete(t, "00000000-0000-4000-8000-000000000001", bearer(st.PersonalAccount())).StatusCode, nil
			},
			want: want{404, map[string]string{"Endpoint": "delete", "Outcome": "not_found"}, zero(nil)},
		},
		{
			name: "not a UUID",
			st:   s,
			run: func(t *testing.T, st *stack) (int, func(t *testing.T)) {
				return st.delete(t, "not-a-uuid", bearer(st.PersonalAccount())).StatusCode, nil
			},
			want: want{400, map[string]string{"Endpoint": "delete", "Outcome": "invalid_id"}, zero(nil)},
		},
		{
			name: "no credentials",
			st:   s,
			run: func(t *testing.T, st *stack) (int, func(t *testing.T)) {
				return st.delete(t, st.Thread(st.PersonalAccount(), "", ""), nil).StatusCode, nil
			},
			want: want{401, map[string]string{"Endpoint": "delete", "Outcome": "unauthenticated"}, zero(nil)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := &testenv.LogBuffer{}
			tc.st.handler.Log = log.Logger()
			status, verify := tc.run(t, tc.st)
			if status != tc.want.status {
				t.Fatalf("status %d, want %d", status, tc.want.status)
			}
			if verify != nil {
				verify(t)
			}
			values, dims := requestMetrics(t, log)
			if !maps.Equal(dims, tc.want.dims) {
				t.Errorf("dimensions %v, want %v", dims, tc.want.dims)
			}
			if d := values["Duration"]; d <= 0 || d > 10_000 {
				t.Errorf("Duration %v ms, want the request's time", d)
			}
			delete(values, "Duration")
			if !maps.Equal(values, tc.want.values) {
				t.Errorf("metrics %v\nwant    %v", values, tc.want.values)
			}
		})
	}
}

// One line per request, whatever it did: the metrics are not a second line.
func TestRequestWritesOneLine(t *testing.T) {
	s := newStack(t, stackOptions{})
	log := &testenv.LogBuffer{}
	s.handler.Log = log.Logger()
	owner := s.PersonalAccount()
	expect(t, s.delete(t, s.Thread(owner, "", ""), bearer(owner)), 200, nil)
	lines := log.Lines(t)
	if len(lines) != 1 || !strings.Contains(string(lines[0].Raw), `"_aws"`) {
		t.Fatalf("the handler wrote %d lines, want the one request line with its metrics: %+v", len(lines), lines)
	}
}
