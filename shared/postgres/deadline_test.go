package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// The server-side time limits (the one that goes with a caller's deadline,
// and the lock timeout) ride in the same batch: still one round trip, and
// they do not outlive the transaction on the pooled connection.
func TestDeleteWithDeadlineIsOneRoundTripAndLeavesNoSetting(t *testing.T) {
	w := newWorld(t)
	owner := w.PersonalAccount()
	p := w.Project(owner, w.Sandbox(owner, "sb-dl"), "")
	th := w.Thread(owner, p, "")
	w.Content(th, 5, 1, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.store.Pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	const settings = `SELECT current_setting('statement_timeout') || ' ' || current_setting('lock_timeout')`
	var before string
	if err := w.store.Pool.QueryRow(ctx, settings).Scan(&before); err != nil {
		t.Fatal(err)
	}

	trips := w.proxy.RoundTrips()
	del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: []string{th}, Caller: user(owner)})
	if err != nil || del.Outcome(th) != threads.OutcomeDeleted || len(del.Work.ProjectIDs) != 1 {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	if n := w.proxy.RoundTrips() - trips; n != 1 {
		t.Fatalf("%d round trips with a deadline, want 1", n)
	}
	var after string
	if err := w.store.Pool.QueryRow(ctx, settings).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("statement_timeout and lock_timeout on the pooled connection are %q after a delete, were %q", after, before)
	}
}

// A delete waiting on a lock when the caller's deadline passes gives up
// before the deadline and never commits afterwards, even when pgx's cancel
// request cannot reach the server (here: new connections are refused, as
// when the Lambda environment is frozen right after it answered).
func TestDeleteAbandonedAtTheDeadlineNeverCommitsLater(t *testing.T) {
	w := newWorld(t)
	bg := context.Background()
	owner := w.PersonalAccount()
	p := w.Project(owner, w.Sandbox(owner, "sb-abandoned"), "")
	th := w.Thread(owner, p, "")
	w.Content(th, 3, 1, 1)
	if err := w.store.Pool.Ping(bg); err != nil {
		t.Fatal(err)
	}
	before := w.Snapshot()

	holder, err := w.Pool.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(bg) //nolint:errcheck
	if _, err := holder.Exec(bg, `SELECT 1 FROM public.projects WHERE project_id = $1 FOR KEY SHARE`, p); err != nil {
		t.Fatal(err)
	}
	w.proxy.Refuse(true) // the open pooled connection still works; a cancel request cannot get through

	const budget = 700 * time.Millisecond
	ctx, cancel := context.WithTimeout(bg, budget)
	defer cancel()
	start := time.Now()
	_, err = w.store.Delete(ctx, threads.Request{ThreadIDs: []string{th}, Caller: user(owner)})
	if took := time.Since(start); took >= budget+100*time.Millisecond {
		t.Fatalf("gave up after %v with a %v budget", took, budget)
	}
	if !errors.Is(err, threads.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if err := holder.Rollback(bg); err != nil {
		t.Fatal(err)
	}
	// With the lock free, an abandoned delete would run on and commit.
	w.WaitServiceIdle()
	if after := w.Snapshot(); !mapsEqual(before, after) {
		t.Fatalf("an abandoned delete committed after its caller gave up:\nbefore %v\nafter  %v", before, after)
	}

	// The delete goes through once the lock is free.
	w.proxy.Refuse(false)
	del, err := w.store.Delete(bg, threads.Request{ThreadIDs: []string{th}, Caller: user(owner)})
	if err != nil || del.Outcome(th) != threads.OutcomeDeleted {
		t.Fatalf("delete after the lock was released: %+v, %v", del, err)
	}
}
