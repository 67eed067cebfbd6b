package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/auth"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Each requested id is decided as if it were deleted alone, and everything
// deletable goes in one transaction.
func TestBulkDecidesEachIDAsIfAlone(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	owner, other := w.PersonalAccount(), w.PersonalAccount()

	// P1 is emptied by the request, P2 keeps a thread; Q is another
	// account's project.
	p1 := w.Project(owner, w.Sandbox(owner, "sb-p1"), "")
	p2 := w.Project(owner, w.Sandbox(owner, "sb-p2"), "")
	q := w.Project(other, "", "")
	a1, a2 := w.Thread(owner, p1, ""), w.Thread(owner, p1, "")
	child := w.Thread(owner, p1, a1) // requested too: removed with its parent
	b1, keep := w.Thread(owner, p2, ""), w.Thread(owner, p2, "")
	foreign := w.Thread(other, q, "")
	// A thread of the owner whose sub-agent thread belongs to the other
	// account: forbidden as a whole, nothing of it goes.
	mixed := w.Thread(owner, p2, "")
	mixedChild := w.Thread(other, p2, mixed)
	unknown := testenv.NewUUID()
	for _, th := range []string{a1, a2, child, b1} {
		w.Content(th, 3, 1, 1)
	}

	ids := []string{a1, a2, child, b1, foreign, mixed, unknown}
	del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: ids, Caller: user(owner)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]threads.Outcome{
		a1: threads.OutcomeDeleted, a2: threads.OutcomeDeleted, child: threads.OutcomeDeleted, b1: threads.OutcomeDeleted,
		foreign: threads.OutcomeForbidden, mixed: threads.OutcomeForbidden, unknown: threads.OutcomeNotFound,
	}
	for id, o := range want {
		if got := del.Outcome(id); got != o {
			t.Errorf("%s: %v, want %v", id, got, o)
		}
	}
	if got, want := del.Work.ThreadIDs, sorted(a1, a2, child, b1); !slices.Equal(got, want) {
		t.Fatalf("threads deleted %v, want %v", got, want)
	}
	if !slices.Equal(del.Work.ProjectIDs, []string{p1}) || w.projectExists(p1) || !w.projectExists(p2) || !w.projectExists(q) {
		t.Fatalf("projects deleted %v; P1 must go, P2 and Q stay", del.Work.ProjectIDs)
	}
	if len(del.Teardowns) != 1 || del.Teardowns[0].SandboxID != "sb-p1" || w.teardowns(p1) != 1 || w.teardowns(p2) != 0 {
		t.Fatalf("teardowns %+v", del.Teardowns)
	}
	for _, th := range []string{keep, foreign, mixed, mixedChild} {
		if !w.threadExists(th) {
			t.Fatalf("thread %s was deleted", th)
		}
	}
	if d := accountDelta(del, owner); d.Threads != 4 || d.Projects != 1 {
		t.Fatalf("owner's delta %+v, want 4 threads, 1 project", d)
	}
	if d := accountDelta(del, other); d.Threads != 0 || d.Projects != 0 {
		t.Fatalf("the other account was charged: %+v", d)
	}
}

// A hundred ids over ten projects: one round trip, every emptied project
// deleted with exactly one teardown.
func TestBulkOfAHundredIsOneRoundTrip(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	owner := w.PersonalAccount()
	var ids, projects []string
	for i := range 10 {
		p := w.Project(owner, w.Sandbox(owner, "sb-"+string(rune('a'+i))), "")
		projects = append(projects, p)
		for range 10 {
			th := w.Thread(owner, p, "")
			w.Content(th, 2, 1, 1)
			ids = append(ids, th)
		}
	}
	if err := w.store.Pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	trips := w.proxy.RoundTrips()
	del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: ids, Caller: user(owner)})
	if err != nil {
		t.Fatal(err)
	}
	if n := w.proxy.RoundTrips() - trips; n != 1 {
		t.Fatalf("%d round trips, want 1", n)
	}
	if len(del.Work.ThreadIDs) != 100 || len(del.Work.ProjectIDs) != 10 || len(del.Teardowns) != 10 {
		t.Fatalf("%d threads, %d projects, %d teardowns; want 100, 10, 10", len(del.Work.ThreadIDs), len(del.Work.ProjectIDs), len(del.Teardowns))
	}
	for _, p := range projects {
		if w.projectExists(p) || w.teardowns(p) != 1 {
			t.Fatalf("project %s: exists %v, %d teardowns", p, w.projectExists(p), w.teardowns(p))
		}
	}
	if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'redis_work'`); n != 1 {
		t.Fatalf("%d redis work rows, want 1 for the whole request", n)
	}
}

// Two bulk requests over the same projects at once: no deadlock, no
// orphan, no double teardown; every id is deleted by exactly one of them.
func TestRaceBulkRequestsOverTheSameProjects(t *testing.T) {
	w := newRaceWorld(t, 2)
	for round := range raceRounds {
		owner := w.PersonalAccount()
		var all []string
		var ps []project
		for range 3 {
			p := w.seedProjectOf(owner, 3, 2)
			ps = append(ps, p)
			all = append(all, p.threads()...)
		}
		// Overlapping halves, in opposite orders.
		first := slices.Clone(all[:len(all)*2/3])
		second := slices.Clone(all[len(all)/3:])
		slices.Reverse(second)
		var wg sync.WaitGroup
		results := make([]deleteResult, 2)
		start := make(chan struct{})
		for i, ids := range [][]string{first, second} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				del, err := w.stores[i].Delete(ctx, threads.Request{ThreadIDs: ids, Caller: user(owner)})
				results[i] = deleteResult{del: del, err: err}
			}()
		}
		close(start)
		wg.Wait()
		seen := map[string]int{}
		for _, r := range results {
			if r.err != nil {
				t.Fatalf("round %d: %v", round, r.err)
			}
			for _, id := range r.del.Work.ThreadIDs {
				seen[id]++
			}
		}
		for _, id := range all {
			if seen[id] != 1 {
				t.Fatalf("round %d: thread %s deleted %d times", round, id, seen[id])
			}
		}
		for _, p := range ps {
			if w.projectExists(p.id) || w.teardowns(p.id) != 1 {
				t.Fatalf("round %d: project exists %v with %d teardowns", round, w.projectExists(p.id), w.teardowns(p.id))
			}
		}
		w.checkInvariants(t)
	}
}

// The Redis work recorded with a delete names what Kortix's caches need:
// per-account counts, the deleted threads and projects, and the agent runs
// that were still running (and only those).
func TestRedisWorkIsRecordedWithTheDelete(t *testing.T) {
	w := newWorld(t)
	owner := w.PersonalAccount()
	p := w.Project(owner, "", "")
	th := w.Thread(owner, p, "")
	child := w.Thread(owner, p, th)
	running1, running2 := w.Run(th, "running"), w.Run(child, "running")
	w.Run(th, "completed")
	w.Run(child, "failed")

	del := deleteOne(t, w.store, th, user(owner))
	var stored threads.CacheWork
	var raw []byte
	if err := w.Pool.QueryRow(context.Background(), `SELECT payload FROM thread_delete.outbox WHERE id = $1 AND kind = 'redis_work' AND status = 'pending'`, del.Work.ID).Scan(&raw); err != nil {
		t.Fatalf("no pending redis work row under %q: %v", del.Work.ID, err)
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		t.Fatal(err)
	}
	stored.ID = del.Work.ID
	wantRuns := sorted(running1, running2)
	want := threads.CacheWork{
		ID:         del.Work.ID,
		Accounts:   []threads.AccountDelta{{AccountID: owner, Threads: 2, Projects: 1}},
		ThreadIDs:  sorted(th, child),
		ProjectIDs: []string{p},
		StopRuns:   wantRuns,
	}
	for _, got := range []threads.CacheWork{del.Work, stored} {
		if !slices.Equal(got.Accounts, want.Accounts) || !slices.Equal(got.ThreadIDs, want.ThreadIDs) ||
			!slices.Equal(got.ProjectIDs, want.ProjectIDs) || !slices.Equal(got.StopRuns, want.StopRuns) {
			t.Fatalf("work = %+v\nwant   %+v", got, want)
		}
	}

	// Nothing deleted: no row.
	before := w.Count(`SELECT count(*) FROM thread_delete.outbox`)
	if del := deleteOne(t, w.store, testenv.NewUUID(), user(owner)); del.Work.ID != "" {
		t.Fatalf("a 404 recorded work %+v", del.Work)
	}
	if w.Count(`SELECT count(*) FROM thread_delete.outbox`) != before {
		t.Fatal("a 404 wrote to the outbox")
	}
}

// With sessions required, the token's session must still exist in
// auth.sessions (not signed out, not past not_after): checked inside the
// same single round trip.
func TestSessionMustStillExistWhenRequired(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	owner, other := w.PersonalAccount(), w.PersonalAccount()
	live := w.Session(owner, time.Time{})
	ending := w.Session(owner, time.Now().Add(time.Hour))
	ended := w.Session(owner, time.Now().Add(-time.Minute))
	signedOut := w.Session(owner, time.Time{})
	w.Exec(`DELETE FROM auth.sessions WHERE id = $1`, signedOut)
	othersSession := w.Session(other, time.Time{})
	if err := w.store.Pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		session string
		wantErr error
	}{
		{"live session", live, nil},
		{"session ending later", ending, nil},
		{"no session required", "", nil},
		{"session past not_after", ended, threads.ErrSessionRevoked},
		{"signed out", signedOut, threads.ErrSessionRevoked},
		{"unknown session", testenv.NewUUID(), threads.ErrSessionRevoked},
		{"another user's session", othersSession, threads.ErrSessionRevoked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			th := w.Thread(owner, "", "")
			before := w.Snapshot()
			trips := w.proxy.RoundTrips()
			del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: []string{th}, Caller: threads.Caller{UserID: owner, SessionID: tc.session}})
			if n := w.proxy.RoundTrips() - trips; n != 1 {
				t.Fatalf("%d round trips, want 1", n)
			}
			if tc.wantErr == nil {
				if err != nil || del.Outcome(th) != threads.OutcomeDeleted {
					t.Fatalf("%v, %v; want deleted", del.Outcome(th), err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !mapsEqual(before, w.Snapshot()) {
				t.Fatal("a refused session changed data")
			}
		})
	}
}

// An API key acts for its own account only (Kortix acts as the key's
// account_id): not for the other accounts its owner belongs to, not for the
// owner's personal account, and never with the owner's admin role. A 403
// writes nothing but the key's last_used_at.
func TestAPIKeyActsForItsOwnAccountOnly(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	const secret = "api-key-secret"
	hash := func(s string) string { return auth.HashSecret([]byte(secret), s) }
	keyCaller := func(key string) threads.Caller {
		pk, sk := key[:35], key[36:]
		return threads.Caller{APIKey: &threads.APIKey{PublicKey: pk, SecretHash: hash(sk)}}
	}
	for _, role := range []string{"", "admin", "super_admin"} {
		t.Run("owner role "+role, func(t *testing.T) {
			owner := w.PersonalAccount()
			if role != "" {
				w.Role(owner, role)
			}
			teamA, teamB := w.TeamAccount(owner), w.TeamAccount(w.PersonalAccount())
			w.Member(teamB, owner, "member")
			stranger := w.PersonalAccount()
			key := w.APIKey(teamA, "active", 0, hash)
			targets := map[string]string{
				"the owner's other team":       w.Thread(teamB, w.Project(teamB, "", ""), ""),
				"the owner's personal account": w.Thread(owner, w.Project(owner, "", ""), ""),
				"an unrelated account":         w.Thread(stranger, w.Project(stranger, "", ""), ""),
			}
			for name, th := range targets {
				w.Exec(`UPDATE public.api_keys SET last_used_at = NULL`)
				before := w.Snapshot()
				del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: []string{th}, Caller: keyCaller(key)})
				if err != nil || del.Outcome(th) != threads.OutcomeForbidden {
					t.Fatalf("%s: %v, %v; want forbidden", name, del.Outcome(th), err)
				}
				after := w.Snapshot()
				if after["api_keys_used"] != 1 {
					t.Fatalf("%s: last_used_at not recorded", name)
				}
				after["api_keys_used"] = before["api_keys_used"]
				if !mapsEqual(before, after) {
					t.Fatalf("%s: a 403 changed data:\nbefore %v\nafter  %v", name, before, after)
				}
			}
			own := w.Thread(teamA, w.Project(teamA, "", ""), "")
			if del := deleteOne(t, w.store, own, keyCaller(key)); del.Outcome(own) != threads.OutcomeDeleted {
				t.Fatalf("the key's own account: %v", del.Outcome(own))
			}
		})
	}
}
