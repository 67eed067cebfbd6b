package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// outboxWorld is a fresh database with an OutboxStore and a seeder.
type outboxWorld struct {
	testenv.Seeder
	store *postgres.OutboxStore
}

func newOutboxWorld(t *testing.T) *outboxWorld {
	t.Helper()
	url := testenv.Database(t)
	pool := testenv.ServicePool(t, url, 8)
	return &outboxWorld{Seeder: testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}, store: &postgres.OutboxStore{Pool: pool}}
}

// teardownRow inserts a pending teardown row the way delete-thread does and
// returns its id.
func (w *outboxWorld) teardownRow(t threads.Teardown) string {
	w.TB.Helper()
	payload, _ := json.Marshal(t)
	var id string
	if err := w.Pool.QueryRow(context.Background(),
		`INSERT INTO thread_delete.outbox (kind, payload) VALUES ('sandbox_teardown', $1::jsonb) RETURNING id::text`, string(payload)).Scan(&id); err != nil {
		w.TB.Fatal(err)
	}
	return id
}

// row returns status, attempts, sends and last_error of an outbox row.
func (w *outboxWorld) row(id string) (status string, attempts, sends int, lastErr string) {
	w.TB.Helper()
	if err := w.Pool.QueryRow(context.Background(),
		`SELECT status, attempts, sends, coalesce(last_error, '') FROM thread_delete.outbox WHERE id = $1`, id).Scan(&status, &attempts, &sends, &lastErr); err != nil {
		w.TB.Fatal(err)
	}
	return
}

func (w *outboxWorld) resourceStatus(id string) string {
	w.TB.Helper()
	var s string
	if err := w.Pool.QueryRow(context.Background(), `SELECT status FROM public.resources WHERE id = $1`, id).Scan(&s); err != nil {
		w.TB.Fatal(err)
	}
	return s
}

func TestOutboxClaim(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	lease := time.Minute

	pending := w.teardownRow(threads.Teardown{SandboxID: "sb-1"})
	done := w.teardownRow(threads.Teardown{SandboxID: "sb-2"})
	w.Exec(`UPDATE thread_delete.outbox SET status = 'done' WHERE id = $1`, done)
	dead := w.teardownRow(threads.Teardown{SandboxID: "sb-3"})
	w.Exec(`UPDATE thread_delete.outbox SET status = 'dead' WHERE id = $1`, dead)
	leased := w.teardownRow(threads.Teardown{SandboxID: "sb-4"})
	w.Exec(`UPDATE thread_delete.outbox SET locked_until = now() + interval '1 minute' WHERE id = $1`, leased)
	expired := w.teardownRow(threads.Teardown{SandboxID: "sb-5"})
	w.Exec(`UPDATE thread_delete.outbox SET locked_until = now() - interval '1 second' WHERE id = $1`, expired)

	tests := []struct {
		name string
		id   string
		want cleanup.Claim
	}{
		{"pending row is claimed", pending, cleanup.Claimed},
		{"claimed row is busy for a second claimer", pending, cleanup.Busy},
		{"done row", done, cleanup.AlreadyDone},
		{"dead row gets another go", dead, cleanup.Claimed},
		{"row leased by someone else", leased, cleanup.Busy},
		{"expired lease is taken over", expired, cleanup.Claimed},
		{"unknown row", testenv.NewUUID(), cleanup.Missing},
	}
	for _, tc := range tests {
		e, got, err := w.store.Claim(ctx, tc.id, lease)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != tc.want {
			t.Errorf("%s: claim = %v, want %v", tc.name, got, tc.want)
		}
		if got == cleanup.Claimed {
			if e.ID != tc.id || e.Kind != cleanup.KindTeardown {
				t.Errorf("%s: entry %+v", tc.name, e)
			}
			if td, err := e.Teardown(); err != nil || td.JobID != tc.id {
				t.Errorf("%s: teardown %+v, %v", tc.name, td, err)
			}
		}
	}
}

func TestOutboxClaimConcurrentlyLeasesOnce(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	id := w.teardownRow(threads.Teardown{SandboxID: "sb-race"})
	const n = 8
	var wg sync.WaitGroup
	results := make([]cleanup.Claim, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, c, err := w.store.Claim(context.Background(), id, time.Minute)
			if err != nil {
				t.Error(err)
			}
			results[i] = c
		}()
	}
	wg.Wait()
	claimed := 0
	for _, c := range results {
		if c == cleanup.Claimed {
			claimed++
		} else if c != cleanup.Busy {
			t.Errorf("unexpected claim result %v", c)
		}
	}
	if claimed != 1 {
		t.Fatalf("%d of %d concurrent claims got the lease, want 1", claimed, n)
	}
}

func TestOutboxCompleteTeardown(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	acct := w.PersonalAccount()

	byID := w.Sandbox(acct, "sb-by-id")
	other := w.Sandbox(acct, "sb-by-id") // same external id, different resource: untouched
	legacy := w.Sandbox(acct, "sb-legacy")
	unrelated := w.Sandbox(acct, "sb-unrelated")

	tests := []struct {
		name string
		td   threads.Teardown
		want map[string]string // resource id -> status afterwards
	}{
		{"by resource id", threads.Teardown{SandboxID: "sb-by-id", ResourceID: byID},
			map[string]string{byID: "deleted", other: "active"}},
		{"legacy: by external id", threads.Teardown{SandboxID: "sb-legacy"},
			map[string]string{legacy: "deleted", unrelated: "active"}},
		{"no resource row at all", threads.Teardown{SandboxID: "sb-nowhere"},
			map[string]string{unrelated: "active"}},
	}
	for _, tc := range tests {
		id := w.teardownRow(tc.td)
		e, c, err := w.store.Claim(ctx, id, time.Minute)
		if err != nil || c != cleanup.Claimed {
			t.Fatalf("%s: claim %v %v", tc.name, c, err)
		}
		if err := w.store.CompleteTeardown(ctx, e.Lease(), tc.td); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if status, attempts, _, _ := w.row(id); status != "done" || attempts != 1 {
			t.Errorf("%s: outbox row %s after %d attempts, want done after 1", tc.name, status, attempts)
		}
		if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = $1 AND done_at IS NOT NULL AND locked_until IS NULL`, id); n != 1 {
			t.Errorf("%s: done_at unset or lease kept", tc.name)
		}
		for res, want := range tc.want {
			if got := w.resourceStatus(res); got != want {
				t.Errorf("%s: resource %s is %s, want %s", tc.name, res, got, want)
			}
		}
		// Completing again (a late duplicate) changes nothing.
		if err := w.store.CompleteTeardown(ctx, e.Lease(), tc.td); err != nil {
			t.Fatal(err)
		}
		if _, attempts, _, _ := w.row(id); attempts != 1 {
			t.Errorf("%s: a second completion counted an attempt", tc.name)
		}
	}
}

func TestOutboxFail(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	id := w.teardownRow(threads.Teardown{SandboxID: "sb"})

	e, _, _ := w.store.Claim(ctx, id, time.Minute)
	if err := w.store.Fail(ctx, e.Lease(), "daytona: HTTP 500", false); err != nil {
		t.Fatal(err)
	}
	if status, attempts, _, lastErr := w.row(id); status != "pending" || attempts != 1 || lastErr != "daytona: HTTP 500" {
		t.Fatalf("after a failure: %s %d %q", status, attempts, lastErr)
	}
	// The lease is released: the retry can claim at once.
	e, c, _ := w.store.Claim(ctx, id, time.Minute)
	if c != cleanup.Claimed {
		t.Fatalf("claim after failure: %v", c)
	}
	if err := w.store.Fail(ctx, e.Lease(), strings.Repeat("x", 10000), true); err != nil {
		t.Fatal(err)
	}
	if status, attempts, _, lastErr := w.row(id); status != "dead" || attempts != 2 || len(lastErr) > 2000 {
		t.Fatalf("after a dead failure: %s %d len %d", status, attempts, len(lastErr))
	}
	// A failure reported for a row already done does not undo it.
	w.Exec(`UPDATE thread_delete.outbox SET status = 'done' WHERE id = $1`, id)
	if err := w.store.Fail(ctx, e.Lease(), "late", false); err != nil {
		t.Fatal(err)
	}
	if status, _, _, _ := w.row(id); status != "done" {
		t.Fatalf("late failure changed a done row to %s", status)
	}
}

func TestOutboxClaimDue(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	p := cleanup.DuePolicy{ResendAfter: 5 * time.Minute, MaxBackoff: time.Hour, MaxSends: 3}

	fresh := w.teardownRow(threads.Teardown{SandboxID: "fresh"}) // just sent by delete-thread
	overdue := w.teardownRow(threads.Teardown{SandboxID: "overdue"})
	w.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '6 minutes', created_at = now() - interval '6 minutes' WHERE id = $1`, overdue)
	backingOff := w.teardownRow(threads.Teardown{SandboxID: "backing-off"})
	w.Exec(`UPDATE thread_delete.outbox SET sends = 1, next_attempt_at = now() + interval '1 minute' WHERE id = $1`, backingOff)
	resentDue := w.teardownRow(threads.Teardown{SandboxID: "resent-due"})
	w.Exec(`UPDATE thread_delete.outbox SET sends = 2, next_attempt_at = now() - interval '1 second' WHERE id = $1`, resentDue)
	leased := w.teardownRow(threads.Teardown{SandboxID: "leased"})
	w.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '1 hour', locked_until = now() + interval '1 minute' WHERE id = $1`, leased)
	done := w.teardownRow(threads.Teardown{SandboxID: "done"})
	w.Exec(`UPDATE thread_delete.outbox SET status = 'done', next_attempt_at = now() - interval '1 hour' WHERE id = $1`, done)
	exhausted := w.teardownRow(threads.Teardown{SandboxID: "exhausted"})
	w.Exec(`UPDATE thread_delete.outbox SET sends = 3, next_attempt_at = now() - interval '1 second', last_error = 'HTTP 500' WHERE id = $1`, exhausted)

	got, err := w.store.ClaimDue(ctx, p, 100)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]cleanup.Entry{}
	for _, e := range got {
		ids[e.ID] = e
	}
	if len(got) != 2 || ids[overdue].ID == "" || ids[resentDue].ID == "" {
		t.Fatalf("claimed %v, want exactly the overdue and the re-sent-and-due rows", ids)
	}
	// Entries come back as they were before the claim.
	if ids[overdue].Sends != 0 || ids[resentDue].Sends != 2 {
		t.Fatalf("entries not as before the claim: %+v", got)
	}
	// The claim counted the send and applied the backoff: 5m·2^sends.
	for id, want := range map[string]time.Duration{overdue: 10 * time.Minute, resentDue: 40 * time.Minute} {
		var wait time.Duration
		var sends int
		w.Pool.QueryRow(ctx, `SELECT next_attempt_at - now(), sends FROM thread_delete.outbox WHERE id = $1`, id).Scan(&wait, &sends) //nolint:errcheck
		if wait < want-time.Minute || wait > want {
			t.Errorf("row re-sent %d times waits %s, want about %s", sends, wait, want)
		}
	}
	// Claimed rows are not due again.
	if again, _ := w.store.ClaimDue(ctx, p, 100); len(again) != 0 {
		t.Fatalf("claimed twice: %v", again)
	}
	_ = fresh

	// A failed re-send is undone: the row is due again and the send not counted.
	if err := w.store.ResendFailed(ctx, ids[overdue], "re-send failed: queue down"); err != nil {
		t.Fatal(err)
	}
	if _, _, sends, lastErr := w.row(overdue); sends != 0 || lastErr != "re-send failed: queue down" {
		t.Fatalf("after an undone re-send: sends %d, last_error %q", sends, lastErr)
	}
	if again, _ := w.store.ClaimDue(ctx, p, 100); len(again) != 1 || again[0].ID != overdue {
		t.Fatalf("undone row not due again: %v", again)
	}

	// The exhausted row is buried, with its last error kept.
	n, err := w.store.Bury(ctx, p)
	if err != nil || n != 1 {
		t.Fatalf("bury: %d %v", n, err)
	}
	if status, _, _, lastErr := w.row(exhausted); status != "dead" || !strings.Contains(lastErr, "gave up after 3 re-sends") || !strings.Contains(lastErr, "HTTP 500") {
		t.Fatalf("exhausted row: %s %q", status, lastErr)
	}
	for _, id := range []string{fresh, backingOff, leased} {
		if status, _, sends, _ := w.row(id); status != "pending" || (id == fresh && sends != 0) {
			t.Errorf("row %s touched: %s, sends %d", id, status, sends)
		}
	}
}

func TestOutboxClaimDueBatchesAndCapsBackoff(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	p := cleanup.DuePolicy{ResendAfter: 5 * time.Minute, MaxBackoff: time.Hour, MaxSends: 20}
	for range 7 {
		id := w.teardownRow(threads.Teardown{SandboxID: "sb"})
		w.Exec(`UPDATE thread_delete.outbox SET sends = 10, next_attempt_at = now() - interval '1 second' WHERE id = $1`, id)
	}
	first, err := w.store.ClaimDue(ctx, p, 5)
	if err != nil || len(first) != 5 {
		t.Fatalf("first batch: %d %v", len(first), err)
	}
	second, _ := w.store.ClaimDue(ctx, p, 5)
	if len(second) != 2 {
		t.Fatalf("second batch: %d rows, want the remaining 2", len(second))
	}
	var maxWait time.Duration
	w.Pool.QueryRow(ctx, `SELECT max(next_attempt_at - now()) FROM thread_delete.outbox`).Scan(&maxWait) //nolint:errcheck
	if maxWait > time.Hour || maxWait < 59*time.Minute {
		t.Fatalf("backoff after 11 sends is %s, want the 1h cap", maxWait)
	}
}

// The sweeper's claim and the worker's claim exclude each other: a row the
// worker is on is never re-sent, and a sweep does not lease rows (so a
// message it just re-sent is not refused as busy).
func TestOutboxSweepAndWorkerClaims(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	p := cleanup.DuePolicy{ResendAfter: time.Minute, MaxBackoff: time.Hour, MaxSends: 20}
	id := w.teardownRow(threads.Teardown{SandboxID: "sb"})
	w.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '2 minutes' WHERE id = $1`, id)

	if rows, _ := w.store.ClaimDue(ctx, p, 10); len(rows) != 1 {
		t.Fatalf("due rows: %d", len(rows))
	}
	if _, c, _ := w.store.Claim(ctx, id, time.Minute); c != cleanup.Claimed {
		t.Fatalf("worker claim after a re-send: %v", c)
	}
	w.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '2 minutes' WHERE id = $1`, id)
	if rows, _ := w.store.ClaimDue(ctx, p, 10); len(rows) != 0 {
		t.Fatalf("a leased row was re-sent")
	}
}

// lease returns whether row id is leased right now and its lease token.
func (w *outboxWorld) lease(id string) (leased bool, token string) {
	w.TB.Helper()
	if err := w.Pool.QueryRow(context.Background(),
		`SELECT coalesce(locked_until > now(), false), coalesce(lease_token::text, '') FROM thread_delete.outbox WHERE id = $1`, id).Scan(&leased, &token); err != nil {
		w.TB.Fatal(err)
	}
	return
}

// A consumer whose lease ran out and was taken over can neither release nor
// complete the row: its late calls change nothing and say the lease is lost.
func TestOutboxLeaseTakeover(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	acct := w.PersonalAccount()
	res := w.Sandbox(acct, "sb-takeover")
	td := threads.Teardown{SandboxID: "sb-takeover", ResourceID: res}
	id := w.teardownRow(td)

	a, c, err := w.store.Claim(ctx, id, time.Second)
	if err != nil || c != cleanup.Claimed || a.LeaseToken == "" {
		t.Fatalf("first claim: %v %v, token %q", c, err, a.LeaseToken)
	}
	w.Exec(`UPDATE thread_delete.outbox SET locked_until = now() - interval '1 second' WHERE id = $1`, id)
	b, c, err := w.store.Claim(ctx, id, time.Minute)
	if err != nil || c != cleanup.Claimed || b.LeaseToken == "" || b.LeaseToken == a.LeaseToken {
		t.Fatalf("takeover: %v %v, tokens %q then %q", c, err, a.LeaseToken, b.LeaseToken)
	}

	late := []struct {
		name string
		call func() error
	}{
		{"Fail", func() error { return w.store.Fail(ctx, a.Lease(), "late failure", false) }},
		{"Fail dead", func() error { return w.store.Fail(ctx, a.Lease(), "late failure", true) }},
		{"Complete", func() error { return w.store.Complete(ctx, a.Lease()) }},
		{"CompleteTeardown", func() error { return w.store.CompleteTeardown(ctx, a.Lease(), td) }},
		{"without a token", func() error { return w.store.Complete(ctx, cleanup.Lease{ID: id}) }},
	}
	for _, l := range late {
		if err := l.call(); !errors.Is(err, cleanup.ErrLeaseLost) {
			t.Errorf("A's late %s: %v, want ErrLeaseLost", l.name, err)
		}
		if status, attempts, _, lastErr := w.row(id); status != "pending" || attempts != 0 || lastErr != "" {
			t.Errorf("after A's late %s: %s, %d attempts, last_error %q", l.name, status, attempts, lastErr)
		}
		if leased, token := w.lease(id); !leased || token != b.LeaseToken {
			t.Errorf("after A's late %s: leased %v by %q, want B's lease %q", l.name, leased, token, b.LeaseToken)
		}
		if got := w.resourceStatus(res); got != "active" {
			t.Errorf("after A's late %s: resource %s", l.name, got)
		}
	}
	// B still holds the row: a third consumer is told Busy, and not B's token.
	if e, c, err := w.store.Claim(ctx, id, time.Minute); err != nil || c != cleanup.Busy || e.LeaseToken != "" {
		t.Fatalf("third claim: %v %v, token %q", c, err, e.LeaseToken)
	}

	// B completes; repeating it is harmless; A still cannot touch the row.
	for range 2 {
		if err := w.store.CompleteTeardown(ctx, b.Lease(), td); err != nil {
			t.Fatalf("B's completion: %v", err)
		}
	}
	if err := w.store.Fail(ctx, a.Lease(), "late failure", true); !errors.Is(err, cleanup.ErrLeaseLost) {
		t.Fatalf("A's failure after B's completion: %v", err)
	}
	if status, attempts, _, lastErr := w.row(id); status != "done" || attempts != 1 || lastErr != "" || w.resourceStatus(res) != "deleted" {
		t.Fatalf("after B's completion: %s, %d attempts, %q, resource %s", status, attempts, lastErr, w.resourceStatus(res))
	}
	if err := w.store.Complete(ctx, cleanup.Lease{ID: testenv.NewUUID(), Token: testenv.NewUUID()}); !errors.Is(err, cleanup.ErrLeaseLost) {
		t.Fatalf("completing an unknown row: %v", err)
	}
}

// An expired lease nobody took over is still its holder's: a slow but
// sole consumer completes (or fails) the row normally.
func TestOutboxExpiredLeaseNotTakenOver(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	for _, complete := range []bool{true, false} {
		id := w.teardownRow(threads.Teardown{SandboxID: "sb-slow"})
		e, _, _ := w.store.Claim(ctx, id, time.Second)
		w.Exec(`UPDATE thread_delete.outbox SET locked_until = now() - interval '1 second' WHERE id = $1`, id)
		var err error
		want := "pending"
		if complete {
			err, want = w.store.Complete(ctx, e.Lease()), "done"
		} else {
			err = w.store.Fail(ctx, e.Lease(), "slow failure", false)
		}
		if status, attempts, _, _ := w.row(id); err != nil || status != want || attempts != 1 {
			t.Fatalf("complete=%v: %v, row %s after %d attempts", complete, err, status, attempts)
		}
	}
}
