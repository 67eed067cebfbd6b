package postgres_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// The closure tests pin down the "lock, then look" rules of the delete
// (DESIGN.md §4) on the data shapes and interleavings that broke the first
// version: sub-agent threads in other projects and accounts, rows committed
// while the delete waits for a lock, parent and child deleted at once, deep
// trees and cycles. Interleavings are forced: a third session holds a lock,
// the test waits until the delete is seen waiting on it (pg_stat_activity),
// then lets go.
//
//	go test -count=20 -run 'Race|Closure' ./shared/postgres

// deleteOne deletes id as caller through s.
func deleteOne(t *testing.T, s *postgres.Store, id string, caller threads.Caller) threads.Deletion {
	t.Helper()
	del, err := s.Delete(context.Background(), threads.Request{ThreadIDs: []string{id}, Caller: caller})
	if err != nil {
		t.Fatalf("delete %s: %v", id, err)
	}
	return del
}

// accountDelta returns what del reports for account (zero when absent).
func accountDelta(del threads.Deletion, account string) threads.AccountDelta {
	for _, a := range del.Work.Accounts {
		if a.AccountID == account {
			return a
		}
	}
	return threads.AccountDelta{AccountID: account}
}

// begin opens a transaction on a connection of its own.
func (w *raceWorld) begin(t *testing.T) pgx.Tx {
	t.Helper()
	tx, err := w.conn(t).Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) }) //nolint:errcheck
	return tx
}

func execTx(t *testing.T, tx pgx.Tx, sql string, args ...any) {
	t.Helper()
	if _, err := tx.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%v\n%s", err, sql)
	}
}

// Defect 1: a sub-agent thread in another project. P1 has A and X; P2 (with
// a sandbox) has B and C, where C is a sub-agent thread of A. Deleting B
// keeps P2 (C is left); deleting A takes C by the cascade, so P2 is empty
// and must go, with its teardown and its project count.
func TestClosureSubAgentThreadInAnotherProjectEmptiesIt(t *testing.T) {
	w := newRaceWorld(t, 1)
	s := w.stores[0]
	owner := w.PersonalAccount()
	p1 := w.Project(owner, "", "")
	p2 := w.Project(owner, w.Sandbox(owner, "sb-p2"), "")
	a, x := w.Thread(owner, p1, ""), w.Thread(owner, p1, "")
	b := w.Thread(owner, p2, "")
	c := w.Thread(owner, p2, a)
	w.Content(c, 3, 1, 1)

	if del := deleteOne(t, s, b, user(owner)); len(del.Work.ProjectIDs) != 0 || !w.projectExists(p2) {
		t.Fatalf("P2 deleted while C is left in it: %+v", del.Work)
	}
	del := deleteOne(t, s, a, user(owner))
	if got, want := del.Work.ThreadIDs, sorted(a, c); !slices.Equal(got, want) {
		t.Fatalf("threads deleted %v, want %v", got, want)
	}
	if w.projectExists(p2) || !slices.Equal(del.Work.ProjectIDs, []string{p2}) {
		t.Fatalf("P2 left empty: exists=%v, projects deleted %v", w.projectExists(p2), del.Work.ProjectIDs)
	}
	if !w.projectExists(p1) || !w.threadExists(x) {
		t.Fatal("P1 or its other thread X was removed")
	}
	if len(del.Teardowns) != 1 || del.Teardowns[0].ProjectID != p2 || del.Teardowns[0].SandboxID != "sb-p2" || w.teardowns(p2) != 1 {
		t.Fatalf("teardowns %+v (rows %d), want exactly one for P2", del.Teardowns, w.teardowns(p2))
	}
	if d := accountDelta(del, owner); d.Threads != 2 || d.Projects != 1 {
		t.Fatalf("account delta %+v, want 2 threads and 1 project", d)
	}
	w.checkInvariants(t)
}

// Defect 2: a sub-agent thread committed while the delete waits for the
// parent's lock is deleted and counted, with its agent run (whose NO ACTION
// foreign key made the first version fail with 23503).
func TestClosureChildCommittedWhileTheDeleteWaits(t *testing.T) {
	w := newRaceWorld(t, 1)
	s := w.stores[0]
	tests := []struct {
		name          string
		parentProject bool // the parent lives in a project (else NULL)
		childProject  string
	}{
		{"no project anywhere", false, "none"},
		{"child in another project", false, "other"},
		{"parent and child in one project", true, "same"},
		{"parent in a project, child in another", true, "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			owner := w.PersonalAccount()
			var parentProject, childProject string
			if tc.parentProject {
				parentProject = w.Project(owner, "", "")
				w.Thread(owner, parentProject, "") // keeps it
			}
			switch tc.childProject {
			case "same":
				childProject = parentProject
			case "other":
				childProject = w.Project(owner, w.Sandbox(owner, "sb-child"), "")
			}
			parent := w.Thread(owner, parentProject, "")
			w.Content(parent, 2, 1, 1)

			tx := w.begin(t)
			child := testenv.NewUUID()
			execTx(t, tx, `INSERT INTO public.threads (thread_id, account_id, project_id, parent_thread_id) VALUES ($1, $2, $3::uuid, $4)`,
				child, owner, nullIfEmpty(childProject), parent)
			run := testenv.NewUUID()
			execTx(t, tx, `INSERT INTO public.agent_runs (id, thread_id, status) VALUES ($1, $2, 'running')`, run, child)
			execTx(t, tx, `INSERT INTO public.messages (thread_id, type, content) VALUES ($1, 'user', '{}')`, child)

			pending := asyncDelete(s, parent, user(owner))
			w.waitForLockWaiters(t, 1)
			if err := tx.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
			r := <-pending
			if r.err != nil {
				t.Fatalf("delete failed: %v", r.err)
			}
			if got, want := r.del.Work.ThreadIDs, sorted(parent, child); !slices.Equal(got, want) {
				t.Fatalf("threads deleted %v, want %v", got, want)
			}
			if d := accountDelta(r.del, owner); d.Threads != 2 {
				t.Fatalf("account delta %+v, want 2 threads", d)
			}
			if !slices.Contains(r.del.Work.StopRuns, run) {
				t.Fatalf("running run %s of the late child not stopped: %v", run, r.del.Work.StopRuns)
			}
			if w.threadExists(child) {
				t.Fatal("the late child survived")
			}
			if tc.childProject == "other" {
				if w.projectExists(childProject) || w.teardowns(childProject) != 1 {
					t.Fatal("the child's project was left empty")
				}
			}
			w.checkInvariants(t)
		})
	}
}

// Defect 3: an agent run that starts while the delete waits for the
// thread's lock goes with the thread (and is told to stop), never a 500.
func TestClosureRunStartedWhileTheDeleteWaits(t *testing.T) {
	w := newRaceWorld(t, 1)
	s := w.stores[0]
	owner := w.PersonalAccount()
	p := w.Project(owner, "", "")
	w.Thread(owner, p, "")
	th := w.Thread(owner, p, "")
	done := w.Run(th, "completed")

	tx := w.begin(t)
	run := testenv.NewUUID()
	execTx(t, tx, `INSERT INTO public.agent_runs (id, thread_id, status) VALUES ($1, $2, 'running')`, run, th)
	pending := asyncDelete(s, th, user(owner))
	w.waitForLockWaiters(t, 1)
	if err := tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := <-pending
	if r.err != nil || r.del.Outcome(th) != threads.OutcomeDeleted {
		t.Fatalf("delete: %v, %v", r.del.Outcome(th), r.err)
	}
	if r.del.Runs != 2 || !slices.Equal(r.del.Work.StopRuns, []string{run}) {
		t.Fatalf("runs %d, stop %v; want 2 runs and a stop for %s only (not the completed %s)", r.del.Runs, r.del.Work.StopRuns, run, done)
	}
	w.checkInvariants(t)
}

// Defect 4: deleting a parent and its sub-agent thread at the same moment
// never deadlocks into a 503, whether they share no project or live in
// different ones.
func TestClosureParentAndChildDeletedAtOnce(t *testing.T) {
	w := newRaceWorld(t, 2)
	ctx := context.Background()

	t.Run("forced: the child's delete holds the child while the parent's waits for it", func(t *testing.T) {
		owner := w.PersonalAccount()
		parent := w.Thread(owner, "", "")
		child := w.Thread(owner, "", parent)
		w.Content(child, 2, 1, 0)
		hold := lockAMessage(t, w.conn(t), child) // the child's delete stops at its messages
		childDel := asyncDelete(w.stores[0], child, user(owner))
		w.waitForLockWaiters(t, 1)
		parentDel := asyncDelete(w.stores[1], parent, user(owner))
		w.waitForLockWaiters(t, 2) // the parent's delete waits for the child's lock
		if err := hold.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		c, p := <-childDel, <-parentDel
		if c.err != nil || p.err != nil {
			t.Fatalf("child delete: %v; parent delete: %v", c.err, p.err)
		}
		if !slices.Equal(c.del.Work.ThreadIDs, []string{child}) || !slices.Equal(p.del.Work.ThreadIDs, []string{parent}) {
			t.Fatalf("child's delete took %v, parent's took %v", c.del.Work.ThreadIDs, p.del.Work.ThreadIDs)
		}
		w.checkInvariants(t)
	})

	t.Run("forced across projects: the sub-agent thread's delete waits, no deadlock", func(t *testing.T) {
		// A in P1 (kept by X); C (child of A) and G (child of C) in P2.
		owner := w.PersonalAccount()
		p1 := w.Project(owner, "", "")
		p2 := w.Project(owner, w.Sandbox(owner, "sb-across"), "")
		a := w.Thread(owner, p1, "")
		w.Thread(owner, p1, "")
		c := w.Thread(owner, p2, a)
		g := w.Thread(owner, p2, c)
		// A third session holds G: the parent's delete locks P1 and P2 (the
		// projects of its whole set, read before any lock), A and C, then
		// waits for G.
		tx := w.begin(t)
		execTx(t, tx, `INSERT INTO public.messages (thread_id, type, content) VALUES ($1, 'user', '{}')`, g)
		parentDel := asyncDelete(w.stores[0], a, user(owner))
		w.waitForLockWaiters(t, 1)
		// The child's delete waits for P2.
		childDel := asyncDelete(w.stores[1], c, user(owner))
		w.waitForLockWaiters(t, 2)
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		p, ch := <-parentDel, <-childDel
		if p.err != nil || ch.err != nil {
			t.Fatalf("parent delete: %v; child delete: %v", p.err, ch.err)
		}
		if got, want := p.del.Work.ThreadIDs, sorted(a, c, g); !slices.Equal(got, want) || ch.del.Outcome(c) != threads.OutcomeNotFound {
			t.Fatalf("parent took %v, child's delete %v; want the parent to take all and the child's to find nothing", got, ch.del.Outcome(c))
		}
		if p.del.RoundTrips+ch.del.RoundTrips != 2 {
			t.Fatalf("round trips %d + %d: a deadlock was retried", p.del.RoundTrips, ch.del.RoundTrips)
		}
		if w.projectExists(p2) || w.teardowns(p2) != 1 || !w.projectExists(p1) {
			t.Fatalf("P2 exists=%v with %d teardowns; P1 exists=%v", w.projectExists(p2), w.teardowns(p2), w.projectExists(p1))
		}
		w.checkInvariants(t)
	})

	t.Run("forced real deadlock: a sub-agent thread committed after the plain read, one re-send, no 503", func(t *testing.T) {
		// Two projects, lo < hi by id. X lives in hi; Z in lo with a child
		// W in hi. While X's delete waits, a child Y of X is committed into
		// lo: X's delete then learns about lo only after it locked hi, while
		// Z's delete locks lo, then hi. A real deadlock; X's delete detects
		// it (its deadlock_timeout is short, Z's long), so the re-send is
		// X's, and it cannot meet a second one: its first lock (lo) is held
		// by Z's delete, which is no longer waiting for anything.
		owner := w.PersonalAccount()
		lo, hi := w.Project(owner, "", ""), w.Project(owner, "", "")
		if hi < lo {
			lo, hi = hi, lo
		}
		x, z := w.Thread(owner, hi, ""), w.Thread(owner, lo, "")
		wt := w.Thread(owner, hi, z)
		fast := &postgres.Store{Pool: testenv.ServicePool(t, w.url+"&deadlock_timeout=100ms", 1)}
		slow := &postgres.Store{Pool: testenv.ServicePool(t, w.url+"&deadlock_timeout=10s", 1)}
		xPID, zPID := backendPID(t, fast), backendPID(t, slow)
		// tx1 commits Y (a child of X in lo); tx2 holds X a little longer,
		// so that Z's delete is provably waiting for hi before X's delete
		// goes on.
		tx1, tx2 := w.begin(t), w.begin(t)
		y := testenv.NewUUID()
		execTx(t, tx1, `INSERT INTO public.threads (thread_id, account_id, project_id, parent_thread_id) VALUES ($1, $2, $3, $4)`, y, owner, lo, x)
		execTx(t, tx2, `INSERT INTO public.messages (thread_id, type, content) VALUES ($1, 'user', '{}')`, x)
		xDel := asyncDelete(fast, x, user(owner)) // locks hi, waits for X
		w.waitForLockWaiters(t, 1)
		zDel := asyncDelete(slow, z, user(owner)) // waits for lo (tx1's KEY SHARE)
		w.waitForLockWaiters(t, 2)
		if err := tx1.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		w.waitBlockedBy(t, zPID, xPID) // Z's delete holds lo and waits for hi
		if err := tx2.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		rx, rz := <-xDel, <-zDel
		if rx.err != nil || rz.err != nil {
			t.Fatalf("X's delete: %v; Z's delete: %v (a deadlock must be retried)", rx.err, rz.err)
		}
		if rx.del.RoundTrips != 2 || rz.del.RoundTrips != 1 {
			t.Fatalf("round trips %d (X) and %d (Z), want X's delete re-sent once", rx.del.RoundTrips, rz.del.RoundTrips)
		}
		if got, want := rx.del.Work.ThreadIDs, sorted(x, y); !slices.Equal(got, want) {
			t.Fatalf("X's delete took %v, want %v", got, want)
		}
		for _, th := range []string{x, y, z, wt} {
			if w.threadExists(th) {
				t.Fatalf("thread %s survived", th)
			}
		}
		if w.projectExists(lo) || w.projectExists(hi) {
			t.Fatal("an emptied project survived")
		}
		w.checkInvariants(t)
	})

	t.Run("free-running", func(t *testing.T) {
		for round := range 4 * raceRounds {
			owner := w.PersonalAccount()
			var pp, cp string
			if round%2 == 1 { // different projects
				pp, cp = w.Project(owner, "", ""), w.Project(owner, w.Sandbox(owner, "sb-free"), "")
			}
			parent := w.Thread(owner, pp, "")
			child := w.Thread(owner, cp, parent)
			w.Content(parent, 2, 1, 1)
			w.Content(child, 2, 1, 1)
			results := raceDeletes([]string{parent, child}, user(owner), storeDeleters(w.stores))
			for _, r := range results {
				if r.err != nil {
					t.Fatalf("round %d: delete %s: %v", round, r.threadID, r.err)
				}
			}
			if w.threadExists(parent) || w.threadExists(child) {
				t.Fatalf("round %d: a thread survived", round)
			}
			w.checkInvariants(t)
		}
	})
}

// Defect 5: a sub-agent thread owned by another account. A caller who may
// not write it gets a 403 and nothing changes; a caller who may write both
// deletes both, each counted against its own account.
func TestClosureChildOfAnotherAccount(t *testing.T) {
	w := newRaceWorld(t, 1)
	s := w.stores[0]
	ownerX, ownerY := w.PersonalAccount(), w.PersonalAccount()
	teamX, teamY := w.TeamAccount(ownerX), w.TeamAccount(ownerY)
	both := w.PersonalAccount()
	w.Member(teamX, both, "member")
	w.Member(teamY, both, "member")
	admin := w.PersonalAccount()
	w.Role(admin, "admin")

	seed := func() (p, a, c string) {
		p = w.Project(teamX, "", "")
		w.Thread(teamX, p, "") // keeps the project
		a = w.Thread(teamX, p, "")
		c = w.Thread(teamY, p, a)
		w.Content(c, 2, 1, 1)
		return p, a, c
	}

	t.Run("owner of the parent's account only: forbidden, nothing changes", func(t *testing.T) {
		_, a, _ := seed()
		before := w.Snapshot()
		del := deleteOne(t, s, a, user(ownerX))
		if del.Outcome(a) != threads.OutcomeForbidden {
			t.Fatalf("outcome %v, want forbidden", del.Outcome(a))
		}
		if after := w.Snapshot(); !mapsEqual(before, after) {
			t.Fatalf("a forbidden delete changed data:\nbefore %v\nafter  %v", before, after)
		}
	})
	for _, tc := range []struct{ name, caller string }{{"member of both accounts", both}, {"admin", admin}} {
		t.Run(tc.name+": both deleted, each account charged its own", func(t *testing.T) {
			_, a, c := seed()
			del := deleteOne(t, s, a, user(tc.caller))
			if got, want := del.Work.ThreadIDs, sorted(a, c); !slices.Equal(got, want) {
				t.Fatalf("threads deleted %v, want %v", got, want)
			}
			if dx, dy := accountDelta(del, teamX), accountDelta(del, teamY); dx.Threads != 1 || dy.Threads != 1 {
				t.Fatalf("deltas %+v %+v, want one thread each", dx, dy)
			}
			if d := accountDelta(del, tc.caller); d.Threads != 0 {
				t.Fatalf("the caller's own account was charged: %+v", d)
			}
		})
	}
}

// Deep trees and cycles of parent_thread_id: every level goes, a cycle
// ends, and a forbidden thread anywhere in the set refuses the whole id.
func TestClosureDeepTreesAndCycles(t *testing.T) {
	w := newRaceWorld(t, 1)
	s := w.stores[0]
	owner, stranger := w.PersonalAccount(), w.PersonalAccount()

	t.Run("a chain 40 deep", func(t *testing.T) {
		root := w.Thread(owner, "", "")
		all := []string{root}
		for range 39 {
			all = append(all, w.Thread(owner, "", all[len(all)-1]))
		}
		w.Content(all[len(all)-1], 2, 1, 1)
		del := deleteOne(t, s, root, user(owner))
		if !slices.Equal(del.Work.ThreadIDs, sorted(all...)) {
			t.Fatalf("%d threads deleted, want 40", len(del.Work.ThreadIDs))
		}
		w.checkInvariants(t)
	})
	cycle := func(account2 string) (a, b string) {
		a = w.Thread(owner, "", "")
		b = w.Thread(account2, "", a)
		w.Exec(`UPDATE public.threads SET parent_thread_id = $1 WHERE thread_id = $2`, b, a)
		return a, b
	}
	t.Run("a cycle", func(t *testing.T) {
		a, b := cycle(owner)
		del := deleteOne(t, s, b, user(owner))
		if !slices.Equal(del.Work.ThreadIDs, sorted(a, b)) {
			t.Fatalf("threads deleted %v", del.Work.ThreadIDs)
		}
	})
	t.Run("a cycle through another account's thread", func(t *testing.T) {
		a, b := cycle(stranger)
		before := w.Snapshot()
		if del := deleteOne(t, s, a, user(owner)); del.Outcome(a) != threads.OutcomeForbidden {
			t.Fatalf("outcome %v, want forbidden", del.Outcome(a))
		}
		if !mapsEqual(before, w.Snapshot()) || !w.threadExists(b) {
			t.Fatal("a forbidden delete changed data")
		}
	})
}

// A transaction that loses a deadlock or a serialization conflict is sent
// once more at once; losing again is ErrUnavailable (a 503). A trigger that
// fails the first n deletes with the given SQLSTATE stands in for the
// conflict, so the count of attempts is exact.
func TestDeleteRetriesOnceOnDeadlockOrSerializationFailure(t *testing.T) {
	w := newWorld(t)
	w.Exec(`CREATE SEQUENCE public.test_conflicts`)
	w.Exec(`CREATE TABLE public.test_conflict_plan (code text, times int)`)
	w.Exec(`INSERT INTO public.test_conflict_plan VALUES ('40P01', 0)`)
	w.Exec(`CREATE FUNCTION public.test_conflict() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE p public.test_conflict_plan;
		BEGIN
			SELECT * INTO p FROM public.test_conflict_plan;
			IF nextval('public.test_conflicts') <= p.times THEN
				RAISE EXCEPTION 'injected conflict' USING ERRCODE = p.code;
			END IF;
			RETURN NULL;
		END $$`)
	w.Exec(`CREATE TRIGGER test_conflict BEFORE DELETE ON public.threads FOR EACH STATEMENT EXECUTE FUNCTION public.test_conflict()`)
	owner := w.PersonalAccount()
	if err := w.store.Pool.Ping(context.Background()); err != nil { // connection set-up is not counted
		t.Fatal(err)
	}
	for _, code := range []string{"40P01", "40001"} {
		for _, times := range []int{1, 2} {
			th := w.Thread(owner, "", "")
			w.Exec(`SELECT setval('public.test_conflicts', 1, false)`)
			w.Exec(`UPDATE public.test_conflict_plan SET code = $1, times = $2`, code, times)
			trips := w.proxy.RoundTrips()
			del, err := w.store.Delete(context.Background(), threads.Request{ThreadIDs: []string{th}, Caller: user(owner)})
			sent := w.proxy.RoundTrips() - trips
			if times == 1 {
				if err != nil || del.Outcome(th) != threads.OutcomeDeleted || del.RoundTrips != 2 || sent != 2 {
					t.Fatalf("%s once: %v, %v, %d round trips (reported %d); want deleted after one re-send", code, del.Outcome(th), err, sent, del.RoundTrips)
				}
				continue
			}
			if !errors.Is(err, threads.ErrUnavailable) || sent != 2 || !w.threadExists(th) {
				t.Fatalf("%s twice: %v, %d round trips, thread exists %v; want ErrUnavailable after 2, nothing deleted", code, err, sent, w.threadExists(th))
			}
		}
	}
}

// backendPID returns the server process of s's only pooled connection.
func backendPID(t *testing.T, s *postgres.Store) int {
	t.Helper()
	var pid int
	if err := s.Pool.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitBlockedBy waits until backend pid is waiting for a lock that backend
// by holds.
func (w *raceWorld) waitBlockedBy(t *testing.T, pid, by int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "a backend to wait for another's lock", func() bool {
		return w.Count(`SELECT count(*) FROM unnest(pg_blocking_pids($1)) b WHERE b = $2`, pid, by) == 1
	})
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
