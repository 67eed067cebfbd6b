package cleanup_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/daytona"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

const apiKey = "test-daytona-key"

// world is a fresh database, a Daytona stand-in and a Worker wired to both.
type world struct {
	testenv.Seeder
	store   *postgres.OutboxStore
	daytona *localstack.Daytona
	cache   *fakeCache
	worker  *cleanup.Worker
}

func newWorld(t *testing.T) *world {
	t.Helper()
	url := testenv.Database(t)
	pool := testenv.ServicePool(t, url, 8)
	w := &world{
		Seeder:  testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)},
		store:   &postgres.OutboxStore{Pool: pool},
		daytona: testenv.Daytona(t, apiKey),
		cache:   &fakeCache{},
	}
	client := daytona.New(w.daytona.URL, apiKey, "")
	client.Timeout = 300 * time.Millisecond
	w.worker = &cleanup.Worker{Outbox: w.store, Destroyer: client, Cache: w.cache, Log: quiet()}
	return w
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// sandbox seeds an account with an active sandbox resource known to the
// Daytona stand-in, and the pending teardown outbox row a project delete
// would have written. With legacy the payload names no resource_id (the
// project only had projects.sandbox->>'id').
func (w *world) sandbox(legacy bool) (jobID, sandboxID, resourceID string) {
	w.TB.Helper()
	acct := w.PersonalAccount()
	sandboxID = "sb-" + testenv.NewUUID()[:8]
	resourceID = w.Sandbox(acct, sandboxID)
	w.daytona.AddSandbox(sandboxID)
	td := threads.Teardown{ProjectID: testenv.NewUUID(), AccountID: acct, SandboxID: sandboxID, ThreadID: testenv.NewUUID(), RequestedAt: time.Now()}
	if !legacy {
		td.ResourceID = resourceID
	}
	return w.outboxRow(cleanup.KindTeardown, td), sandboxID, resourceID
}

func (w *world) outboxRow(kind string, payload any) string {
	w.TB.Helper()
	b, _ := json.Marshal(payload)
	var id string
	if err := w.Pool.QueryRow(context.Background(),
		`INSERT INTO thread_delete.outbox (kind, payload) VALUES ($1, $2::jsonb) RETURNING id::text`, kind, string(b)).Scan(&id); err != nil {
		w.TB.Fatal(err)
	}
	return id
}

type rowState struct {
	Status    string
	Attempts  int
	LastError string
	Leased    bool
}

func (w *world) row(id string) rowState {
	w.TB.Helper()
	var r rowState
	if err := w.Pool.QueryRow(context.Background(), `
		SELECT status, attempts, coalesce(last_error, ''), coalesce(locked_until > now(), false)
		  FROM thread_delete.outbox WHERE id = $1`, id).Scan(&r.Status, &r.Attempts, &r.LastError, &r.Leased); err != nil {
		w.TB.Fatal(err)
	}
	return r
}

func (w *world) resourceStatus(id string) string {
	w.TB.Helper()
	var s string
	if err := w.Pool.QueryRow(context.Background(), `SELECT status FROM public.resources WHERE id = $1`, id).Scan(&s); err != nil {
		w.TB.Fatal(err)
	}
	return s
}

func job(msgID, outboxID string) cleanup.Job {
	return cleanup.Job{ID: msgID, OutboxID: outboxID, Kind: cleanup.KindTeardown}
}

// fakeCache records the work it is asked to repair and fails while err is
// set.
type fakeCache struct {
	mu    sync.Mutex
	calls []threads.CacheWork
	err   error
}

func (c *fakeCache) Repair(_ context.Context, works []threads.CacheWork) []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, works...)
	errs := make([]error, len(works))
	for i := range errs {
		errs[i] = c.err
	}
	return errs
}

func TestTeardownDone(t *testing.T) {
	t.Parallel()
	for _, legacy := range []bool{false, true} {
		name := "resource linked"
		if legacy {
			name = "legacy projects.sandbox id"
		}
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			jobID, sandboxID, resourceID := w.sandbox(legacy)

			if failed := w.worker.Handle(context.Background(), []cleanup.Job{job("m1", jobID)}); len(failed) != 0 {
				t.Fatalf("failed %v", failed)
			}
			if w.daytona.Exists(sandboxID) || w.daytona.Calls(sandboxID) != 1 {
				t.Fatalf("sandbox exists %v after %d calls", w.daytona.Exists(sandboxID), w.daytona.Calls(sandboxID))
			}
			if got := w.resourceStatus(resourceID); got != "deleted" {
				t.Fatalf("resource %s", got)
			}
			if r := w.row(jobID); r.Status != "done" || r.Attempts != 1 || r.Leased {
				t.Fatalf("outbox row %+v", r)
			}
		})
	}
}

func TestTeardownOfUnknownSandboxIsDone(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	jobID, sandboxID, resourceID := w.sandbox(false)
	// Daytona no longer knows the sandbox (deleted by hand, or by an
	// earlier attempt whose completion was lost): 404.
	if err := daytona.New(w.daytona.URL, apiKey, "").DeleteSandbox(context.Background(), sandboxID); err != nil {
		t.Fatal(err)
	}

	if failed := w.worker.Handle(context.Background(), []cleanup.Job{job("m1", jobID)}); len(failed) != 0 {
		t.Fatalf("404 reported failed: %v", failed)
	}
	if w.resourceStatus(resourceID) != "deleted" || w.row(jobID).Status != "done" || w.daytona.Calls(sandboxID) != 2 {
		t.Fatalf("resource %s, row %+v, calls %d", w.resourceStatus(resourceID), w.row(jobID), w.daytona.Calls(sandboxID))
	}
}

func TestTeardownRetriedUntilItSucceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		script  func(s *localstack.Daytona, id string)
		wantErr string
	}{
		{"409 conflict", func(s *localstack.Daytona, id string) { s.FailNext(id, 1, 409) }, "HTTP 409"},
		{"500", func(s *localstack.Daytona, id string) { s.FailNext(id, 1, 500) }, "HTTP 500"},
		{"429", func(s *localstack.Daytona, id string) { s.FailNext(id, 1, 429) }, "HTTP 429"},
		{"timeout", func(s *localstack.Daytona, id string) { s.HangNext(id, 1, 5*time.Second) }, "no answer within"},
		{"403 (permanent until fixed)", func(s *localstack.Daytona, id string) { s.FailNext(id, 1, 403) }, "permanent: HTTP 403"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			jobID, sandboxID, resourceID := w.sandbox(false)
			tc.script(w.daytona, sandboxID)
			ctx := context.Background()

			failed := w.worker.Handle(ctx, []cleanup.Job{job("m1", jobID)})
			if !slices.Equal(failed, []string{"m1"}) {
				t.Fatalf("first delivery: failed %v, want [m1]", failed)
			}
			r := w.row(jobID)
			if r.Status != "pending" || r.Attempts != 1 || !strings.Contains(r.LastError, tc.wantErr) || r.Leased {
				t.Fatalf("after the failure: %+v, want pending, 1 attempt, last_error with %q, no lease", r, tc.wantErr)
			}
			if strings.Contains(r.LastError, apiKey) {
				t.Fatal("last_error leaks the API key")
			}
			if w.resourceStatus(resourceID) != "active" {
				t.Fatal("resource marked deleted although Daytona failed")
			}

			// The queue delivers the message again.
			if failed := w.worker.Handle(ctx, []cleanup.Job{job("m1", jobID)}); len(failed) != 0 {
				t.Fatalf("second delivery failed: %v", failed)
			}
			if r := w.row(jobID); r.Status != "done" || r.Attempts != 2 {
				t.Fatalf("after the retry: %+v", r)
			}
			if w.resourceStatus(resourceID) != "deleted" || w.daytona.Exists(sandboxID) || w.daytona.Calls(sandboxID) != 2 {
				t.Fatalf("resource %s, sandbox exists %v, calls %d", w.resourceStatus(resourceID), w.daytona.Exists(sandboxID), w.daytona.Calls(sandboxID))
			}
		})
	}
}

// A bad item never breaks the rest of the batch.
func TestBatchWithBadItems(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	good1, sb1, _ := w.sandbox(false)
	good2, sb2, _ := w.sandbox(true)
	flaky, sbFlaky, _ := w.sandbox(false)
	w.daytona.FailNext(sbFlaky, 1, 500)
	corrupt := w.outboxRow(cleanup.KindTeardown, map[string]string{"project_id": "p"}) // no sandbox_id
	done, sbDone, _ := w.sandbox(false)
	w.Exec(`UPDATE thread_delete.outbox SET status = 'done' WHERE id = $1`, done)

	jobs := []cleanup.Job{
		job("good1", good1),
		job("not-a-uuid", "42"),
		job("unknown-row", testenv.NewUUID()),
		job("corrupt", corrupt),
		job("flaky", flaky),
		job("done", done),
		job("good2", good2),
	}
	failed := w.worker.Handle(context.Background(), jobs)
	slices.Sort(failed)
	if want := []string{"flaky", "not-a-uuid"}; !slices.Equal(failed, want) {
		t.Fatalf("failed %v, want %v", failed, want)
	}
	for _, id := range []string{good1, good2} {
		if r := w.row(id); r.Status != "done" {
			t.Errorf("good row %s: %+v", id, r)
		}
	}
	if w.daytona.Exists(sb1) || w.daytona.Exists(sb2) {
		t.Error("good sandboxes not destroyed")
	}
	// A row that can never work is marked dead and acknowledged: retrying
	// cannot help, and the row says why.
	if r := w.row(corrupt); r.Status != "dead" || !strings.Contains(r.LastError, "sandbox_id") {
		t.Errorf("corrupt row %+v", r)
	}
	if r := w.row(flaky); r.Status != "pending" || r.Attempts != 1 {
		t.Errorf("flaky row %+v", r)
	}
	if w.daytona.Calls(sbDone) != 0 {
		t.Error("a done row was torn down again")
	}
}

func TestDuplicateDeliveryTearsDownOnce(t *testing.T) {
	t.Parallel()
	t.Run("same batch", func(t *testing.T) {
		w := newWorld(t)
		jobID, sandboxID, _ := w.sandbox(false)
		w.daytona.HangNext(sandboxID, 1, 100*time.Millisecond) // keep the first one busy
		failed := w.worker.Handle(context.Background(), []cleanup.Job{job("a", jobID), job("b", jobID)})
		// One delivery did the work; the other found the row leased (and
		// is retried later) or already done (and is acknowledged).
		if len(failed) > 1 {
			t.Fatalf("failed %v", failed)
		}
		if w.daytona.Calls(sandboxID) != 1 || w.row(jobID).Status != "done" {
			t.Fatalf("%d Daytona calls, row %+v", w.daytona.Calls(sandboxID), w.row(jobID))
		}
		// The retried duplicate is acknowledged without another call.
		if failed := w.worker.Handle(context.Background(), []cleanup.Job{job("b", jobID)}); len(failed) != 0 || w.daytona.Calls(sandboxID) != 1 {
			t.Fatalf("redelivery: failed %v, %d calls", failed, w.daytona.Calls(sandboxID))
		}
	})
	t.Run("concurrent invocations", func(t *testing.T) {
		w := newWorld(t)
		jobID, sandboxID, _ := w.sandbox(false)
		w.daytona.HangNext(sandboxID, 1, 150*time.Millisecond)
		const n = 5
		var wg sync.WaitGroup
		results := make([][]string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Separate workers, as separate Lambda instances would be.
				wk := *w.worker
				results[i] = wk.Handle(context.Background(), []cleanup.Job{job("m", jobID)})
			}()
		}
		wg.Wait()
		if w.daytona.Calls(sandboxID) != 1 {
			t.Fatalf("%d Daytona calls for one job", w.daytona.Calls(sandboxID))
		}
		if r := w.row(jobID); r.Status != "done" || r.Attempts != 1 {
			t.Fatalf("row %+v", r)
		}
		acked := 0
		for _, f := range results {
			if len(f) == 0 {
				acked++
			}
		}
		if acked < 1 {
			t.Fatal("no delivery was acknowledged")
		}
	})
	t.Run("sequential redelivery", func(t *testing.T) {
		w := newWorld(t)
		jobID, sandboxID, _ := w.sandbox(false)
		for range 3 {
			if failed := w.worker.Handle(context.Background(), []cleanup.Job{job("m", jobID)}); len(failed) != 0 {
				t.Fatalf("failed %v", failed)
			}
		}
		if w.daytona.Calls(sandboxID) != 1 || w.row(jobID).Attempts != 1 {
			t.Fatalf("%d calls, row %+v", w.daytona.Calls(sandboxID), w.row(jobID))
		}
	})
}

// A worker that died holding the lease delays the job only until the lease
// runs out.
func TestExpiredLeaseIsTakenOver(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	jobID, sandboxID, _ := w.sandbox(false)
	w.Exec(`UPDATE thread_delete.outbox SET locked_until = now() + interval '1 hour' WHERE id = $1`, jobID)
	if failed := w.worker.Handle(context.Background(), []cleanup.Job{job("m", jobID)}); len(failed) != 1 {
		t.Fatalf("leased row: failed %v, want the job retried", failed)
	}
	if w.daytona.Calls(sandboxID) != 0 {
		t.Fatal("called Daytona for a leased row")
	}
	w.Exec(`UPDATE thread_delete.outbox SET locked_until = now() - interval '1 second' WHERE id = $1`, jobID)
	if failed := w.worker.Handle(context.Background(), []cleanup.Job{job("m", jobID)}); len(failed) != 0 || w.row(jobID).Status != "done" {
		t.Fatalf("after expiry: failed %v, row %+v", failed, w.row(jobID))
	}
}

// legacyRepair is the payload an earlier version recorded in a
// cache_repair row when its inline invalidation failed.
type legacyRepair struct {
	Key            string   `json:"key"`
	AccountID      string   `json:"account_id"`
	ProjectID      string   `json:"project_id"`
	ThreadIDs      []string `json:"thread_ids"`
	ProjectDeleted bool     `json:"project_deleted"`
}

// A cache_repair message (an earlier version's, still on the queue) has
// its row's work completed in the repair form.
func TestCacheRepair(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	inv := legacyRepair{Key: testenv.NewUUID(), AccountID: testenv.NewUUID(), ProjectID: testenv.NewUUID(),
		ThreadIDs: []string{testenv.NewUUID(), testenv.NewUUID()}, ProjectDeleted: true}
	id := w.outboxRow(cleanup.KindCacheRepair, inv)
	repair := cleanup.Job{ID: "r", OutboxID: id, Kind: cleanup.KindCacheRepair}

	w.cache.err = errors.New("redis: connection refused")
	if failed := w.worker.Handle(ctx, []cleanup.Job{repair}); len(failed) != 1 {
		t.Fatalf("failing cache: failed %v", failed)
	}
	if r := w.row(id); r.Status != "pending" || r.Attempts != 1 || !strings.Contains(r.LastError, "connection refused") {
		t.Fatalf("after a failed repair: %+v", r)
	}

	w.cache.err = nil
	if failed := w.worker.Handle(ctx, []cleanup.Job{repair}); len(failed) != 0 {
		t.Fatalf("failed %v", failed)
	}
	if r := w.row(id); r.Status != "done" {
		t.Fatalf("row %+v", r)
	}
	if len(w.cache.calls) != 2 {
		t.Fatalf("%d repairs, want 2", len(w.cache.calls))
	}
	want := threads.CacheWork{ID: id, Accounts: []threads.AccountDelta{{AccountID: inv.AccountID, Threads: 2, Projects: 1}},
		ThreadIDs: inv.ThreadIDs, ProjectIDs: []string{inv.ProjectID}}
	if got := w.cache.calls[1]; !reflect.DeepEqual(got, want) {
		t.Fatalf("repaired %+v, want %+v", got, want)
	}
	if w.daytona.TotalCalls() != 0 {
		t.Fatal("a cache repair called Daytona")
	}

	// Without a cache configured the repair waits (fails, stays pending).
	id2 := w.outboxRow(cleanup.KindCacheRepair, inv)
	noCache := *w.worker
	noCache.Cache = nil
	if failed := noCache.Handle(ctx, []cleanup.Job{{ID: "r2", OutboxID: id2}}); len(failed) != 1 || w.row(id2).Status != "pending" {
		t.Fatalf("no cache: failed %v, row %+v", failed, w.row(id2))
	}
}

// Redis work delivered by the queue is completed like a legacy repair; a
// row whose payload cannot be read is marked dead and acknowledged.
func TestRedisWorkDelivered(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	work := threads.CacheWork{Accounts: []threads.AccountDelta{{AccountID: testenv.NewUUID(), Threads: 1}},
		ThreadIDs: []string{testenv.NewUUID()}, StopRuns: []string{testenv.NewUUID()}}
	id := w.outboxRow(cleanup.KindRedisWork, work)
	empty := w.outboxRow(cleanup.KindRedisWork, threads.CacheWork{})
	garbled := w.outboxRow(cleanup.KindRedisWork, map[string]any{"accounts": "all of them"})
	legacyEmpty := w.outboxRow(cleanup.KindCacheRepair, map[string]any{"key": "k"})

	failed := w.worker.Handle(ctx, []cleanup.Job{{ID: "w", OutboxID: id}, {ID: "e", OutboxID: empty},
		{ID: "g", OutboxID: garbled}, {ID: "l", OutboxID: legacyEmpty}})
	if len(failed) != 0 {
		t.Fatalf("failed %v", failed)
	}
	if r := w.row(id); r.Status != "done" || r.Attempts != 1 {
		t.Fatalf("row %+v", r)
	}
	work.ID = id
	if len(w.cache.calls) != 1 || !reflect.DeepEqual(w.cache.calls[0], work) {
		t.Fatalf("repaired %+v, want [%+v]", w.cache.calls, work)
	}
	for _, tc := range []struct{ id, cause string }{
		{empty, "names no account"}, {garbled, "redis work payload"}, {legacyEmpty, "names no account"},
	} {
		if r := w.row(tc.id); r.Status != "dead" || !strings.Contains(r.LastError, tc.cause) {
			t.Errorf("unusable row: %+v, want dead with %q", r, tc.cause)
		}
	}
}

// The worker honours the invocation's deadline: a hung Daytona call is cut
// short, and the failure is still recorded.
func TestDeadlineStillRecordsTheFailure(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	jobID, sandboxID, _ := w.sandbox(false)
	w.daytona.HangNext(sandboxID, 1, 5*time.Second)
	slow := *w.worker
	client := daytona.New(w.daytona.URL, apiKey, "")
	client.Timeout = time.Minute
	slow.Destroyer = client
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if failed := slow.Handle(ctx, []cleanup.Job{job("m", jobID)}); len(failed) != 1 {
		t.Fatalf("failed %v", failed)
	}
	if r := w.row(jobID); r.Attempts != 1 || r.Leased || r.LastError == "" {
		t.Fatalf("row %+v", r)
	}
}

// errorsMentioning returns the ERROR records whose text contains s.
func errorsMentioning(t *testing.T, l *testenv.LogBuffer, s string) []string {
	t.Helper()
	var found []string
	for _, line := range l.Lines(t) {
		if line.Level == "ERROR" && strings.Contains(string(line.Raw), s) {
			found = append(found, string(line.Raw))
		}
	}
	return found
}

// A DAYTONA_SERVER_URL that does not lead to Daytona's sandbox API never
// marks a teardown done or a resource deleted: whatever answers there, even
// with a 404 or a 200, the item fails, is retried, keeps the reason in the
// outbox row, and an ERROR log names the setting. Once the setting is fixed
// the same row completes.
func TestMisconfiguredServerURLNeverMarksDone(t *testing.T) {
	t.Parallel()
	answering := func(status int, contentType, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if contentType != "" {
				w.Header().Set("Content-Type", contentType)
			}
			w.WriteHeader(status)
			io.WriteString(w, body) //nolint:errcheck
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	tests := []struct {
		name   string
		base   func(d *localstack.Daytona) string
		answer string // in last_error
	}{
		{"without /api: Daytona's dashboard, 200 HTML", func(d *localstack.Daytona) string { return d.Origin }, "HTTP 200 is not Daytona's answer (an HTML page)"},
		{"a wrong path under /api: Cannot DELETE", func(d *localstack.Daytona) string { return d.URL + "/v1" }, `"Cannot DELETE /api/v1/sandbox/`},
		{"another server's HTML 404", func(*localstack.Daytona) string {
			return answering(404, "text/html", "<html><body>Not Found</body></html>")
		}, "HTTP 404 is not Daytona's answer (an HTML page)"},
		{"an empty 404", func(*localstack.Daytona) string { return answering(404, "", "") }, "HTTP 404 is not Daytona's answer (empty body)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			jobID, sandboxID, resourceID := w.sandbox(false)
			var logs testenv.LogBuffer
			wrong := *w.worker
			wrong.Destroyer = daytona.New(tc.base(w.daytona), apiKey, "")
			wrong.Log = logs.Logger()
			ctx := context.Background()

			for attempt := 1; attempt <= 2; attempt++ {
				if failed := wrong.Handle(ctx, []cleanup.Job{job("m1", jobID)}); !slices.Equal(failed, []string{"m1"}) {
					t.Fatalf("delivery %d: failed %v, want [m1]", attempt, failed)
				}
				r := w.row(jobID)
				if r.Status != "pending" || r.Attempts != attempt || r.Leased ||
					!strings.Contains(r.LastError, "DAYTONA_SERVER_URL") || !strings.Contains(r.LastError, tc.answer) {
					t.Fatalf("delivery %d: row %+v, want pending, %d attempts, no lease, last_error naming DAYTONA_SERVER_URL and %q", attempt, r, attempt, tc.answer)
				}
				if got := w.resourceStatus(resourceID); got != "active" {
					t.Fatalf("delivery %d: resource %s", attempt, got)
				}
			}
			if !w.daytona.Exists(sandboxID) || w.daytona.Calls(sandboxID) != 0 {
				t.Fatalf("sandbox exists %v, %d calls reached it", w.daytona.Exists(sandboxID), w.daytona.Calls(sandboxID))
			}
			if got := errorsMentioning(t, &logs, "DAYTONA_SERVER_URL"); len(got) != 2 {
				t.Fatalf("%d ERROR records name DAYTONA_SERVER_URL, want one per delivery:\n%s", len(got), logs.String())
			}

			// The operator fixes the setting; the next delivery completes.
			if failed := w.worker.Handle(ctx, []cleanup.Job{job("m1", jobID)}); len(failed) != 0 {
				t.Fatalf("with the right URL: failed %v", failed)
			}
			if r := w.row(jobID); r.Status != "done" || w.resourceStatus(resourceID) != "deleted" || w.daytona.Exists(sandboxID) {
				t.Fatalf("with the right URL: row %+v, resource %s, sandbox exists %v", r, w.resourceStatus(resourceID), w.daytona.Exists(sandboxID))
			}
		})
	}
}

// gatedDestroyer holds each DeleteSandbox call until the test releases it,
// after telling the test that the call has begun.
type gatedDestroyer struct {
	next    cleanup.Destroyer
	began   chan struct{}
	release chan struct{}
}

func newGate(next cleanup.Destroyer) *gatedDestroyer {
	return &gatedDestroyer{next: next, began: make(chan struct{}, 1), release: make(chan struct{})}
}

func (g *gatedDestroyer) DeleteSandbox(ctx context.Context, id string) error {
	g.began <- struct{}{}
	<-g.release
	return g.next.DeleteSandbox(ctx, id)
}

// A worker whose lease ran out and was taken over cannot release or
// complete its successor's lease: a third delivery finds the row busy, and
// Daytona sees exactly one call per lease holder. Deterministic: the workers
// are held at their Daytona call by channels, and the lease is expired with
// SQL.
func TestLateWorkerCannotReleaseTakenOverLease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		aAnswer func(d *localstack.Daytona, sandboxID string) // script for A's call
	}{
		{"A's late call fails", func(d *localstack.Daytona, id string) { d.FailNext(id, 1, 500) }},
		{"A's late call succeeds", func(*localstack.Daytona, string) {}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t)
			jobID, sandboxID, resourceID := w.sandbox(false)
			ctx := context.Background()
			tc.aAnswer(w.daytona, sandboxID)

			// Worker A claims with a short lease and is held at Daytona.
			a, gateA := *w.worker, newGate(w.worker.Destroyer)
			a.Destroyer, a.Lease = gateA, 5*time.Second
			aDone := make(chan []string, 1)
			go func() { aDone <- a.Handle(ctx, []cleanup.Job{job("mA", jobID)}) }()
			<-gateA.began

			// A's lease runs out; worker B takes the row over and is held too.
			w.Exec(`UPDATE thread_delete.outbox SET locked_until = now() - interval '1 second' WHERE id = $1`, jobID)
			b, gateB := *w.worker, newGate(w.worker.Destroyer)
			b.Destroyer = gateB
			bDone := make(chan []string, 1)
			go func() { bDone <- b.Handle(ctx, []cleanup.Job{job("mB", jobID)}) }()
			<-gateB.began
			var leaseB string
			w.Pool.QueryRow(ctx, `SELECT lease_token::text FROM thread_delete.outbox WHERE id = $1`, jobID).Scan(&leaseB) //nolint:errcheck

			// A wakes up: its outcome, whatever it is, must not touch B's lease.
			close(gateA.release)
			if failed := <-aDone; !slices.Equal(failed, []string{"mA"}) {
				t.Fatalf("late worker A: failed %v, want [mA] (it must not count as done)", failed)
			}
			var token string
			w.Pool.QueryRow(ctx, `SELECT lease_token::text FROM thread_delete.outbox WHERE id = $1`, jobID).Scan(&token) //nolint:errcheck
			if r := w.row(jobID); r.Status != "pending" || r.Attempts != 0 || r.LastError != "" || !r.Leased || token != leaseB {
				t.Fatalf("after A's late outcome: row %+v, lease %q, want untouched and still B's %q", r, token, leaseB)
			}
			if got := w.resourceStatus(resourceID); got != "active" {
				t.Fatalf("A completed B's row: resource %s", got)
			}

			// A third delivery finds the row busy and does not call Daytona.
			if failed := w.worker.Handle(ctx, []cleanup.Job{job("mC", jobID)}); !slices.Equal(failed, []string{"mC"}) {
				t.Fatalf("third delivery: failed %v, want [mC] (busy)", failed)
			}
			if n := w.daytona.Calls(sandboxID); n != 1 {
				t.Fatalf("%d Daytona calls before B's, want A's only", n)
			}

			// B finishes: the sandbox is gone (deleted now, or by A already),
			// and B completes the row.
			close(gateB.release)
			if failed := <-bDone; len(failed) != 0 {
				t.Fatalf("worker B: failed %v", failed)
			}
			if r := w.row(jobID); r.Status != "done" || r.Attempts != 1 || r.Leased || w.resourceStatus(resourceID) != "deleted" {
				t.Fatalf("after B: row %+v, resource %s", r, w.resourceStatus(resourceID))
			}
			if w.daytona.Exists(sandboxID) || w.daytona.Calls(sandboxID) != 2 {
				t.Fatalf("sandbox exists %v after %d Daytona calls, want gone after 2 (A's and B's)", w.daytona.Exists(sandboxID), w.daytona.Calls(sandboxID))
			}
		})
	}
}
