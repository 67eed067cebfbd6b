package postgres_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// world is one test database with a pool for the Store and a seeder.
type world struct {
	testenv.Seeder
	store *postgres.Store
	proxy *testenv.Proxy
}

func newWorld(t *testing.T) *world {
	t.Helper()
	url := testenv.Database(t)
	proxy := testenv.StartProxy(t, testenv.PostgresAddr())
	pool := testenv.ServicePool(t, testenv.ViaAddr(url, proxy.Addr), 1)
	return &world{
		Seeder: testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)},
		store:  &postgres.Store{Pool: pool},
		proxy:  proxy,
	}
}

func (w *world) threadExists(id string) bool {
	return w.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, id) == 1
}

func (w *world) projectExists(id string) bool {
	return w.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, id) == 1
}

func user(id string) threads.Caller { return threads.Caller{UserID: id} }

func TestDeleteOutcomes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()

	type scenario struct {
		threadID  string
		caller    threads.Caller
		outcome   threads.Outcome
		changes   bool
		projectID string
	}
	tests := []struct {
		name  string
		setup func() scenario
	}{
		{"owner deletes a thread that is not the project's last", func() scenario {
			owner := w.PersonalAccount()
			p := w.Project(owner, w.Sandbox(owner, "sb-keep"), "")
			t1 := w.Thread(owner, p, "")
			w.Thread(owner, p, "")
			w.Content(t1, 5, 2, 3)
			return scenario{t1, user(owner), threads.OutcomeDeleted, true, p}
		}},
		{"member of a team account", func() scenario {
			owner, member := w.PersonalAccount(), w.PersonalAccount()
			team := w.TeamAccount(owner)
			w.Member(team, member, "member")
			p := w.Project(team, "", "")
			t1 := w.Thread(team, p, "")
			return scenario{t1, user(member), threads.OutcomeDeleted, true, p}
		}},
		{"admin", func() scenario {
			owner, admin := w.PersonalAccount(), w.PersonalAccount()
			w.Role(admin, "admin")
			p := w.Project(owner, "", "")
			return scenario{w.Thread(owner, p, ""), user(admin), threads.OutcomeDeleted, true, p}
		}},
		{"super_admin", func() scenario {
			owner, admin := w.PersonalAccount(), w.PersonalAccount()
			w.Role(admin, "super_admin")
			p := w.Project(owner, "", "")
			return scenario{w.Thread(owner, p, ""), user(admin), threads.OutcomeDeleted, true, p}
		}},
		{"stranger is forbidden", func() scenario {
			owner, stranger := w.PersonalAccount(), w.PersonalAccount()
			w.Role(stranger, "user")
			p := w.Project(owner, w.Sandbox(owner, "sb-x"), "")
			t1 := w.Thread(owner, p, "")
			w.Content(t1, 3, 1, 1)
			return scenario{t1, user(stranger), threads.OutcomeForbidden, false, p}
		}},
		{"public project grants no write", func() scenario {
			owner, stranger := w.PersonalAccount(), w.PersonalAccount()
			p := w.Project(owner, "", "")
			w.Exec(`UPDATE public.projects SET is_public = true WHERE project_id = $1`, p)
			t1 := w.Thread(owner, p, "")
			w.Exec(`UPDATE public.threads SET is_public = true WHERE thread_id = $1`, t1)
			return scenario{t1, user(stranger), threads.OutcomeForbidden, false, p}
		}},
		{"no such thread", func() scenario {
			return scenario{testenv.NewUUID(), user(w.PersonalAccount()), threads.OutcomeNotFound, false, ""}
		}},
		{"thread without project", func() scenario {
			owner := w.PersonalAccount()
			t1 := w.Thread(owner, "", "")
			w.Content(t1, 2, 1, 1)
			return scenario{t1, user(owner), threads.OutcomeDeleted, true, ""}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc := tc.setup()
			before := w.Snapshot()
			del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: []string{sc.threadID}, Caller: sc.caller})
			if err != nil {
				t.Fatal(err)
			}
			if got := del.Outcome(sc.threadID); got != sc.outcome {
				t.Fatalf("outcome = %v, want %v", got, sc.outcome)
			}
			if !sc.changes {
				if after := w.Snapshot(); !mapsEqual(before, after) {
					t.Fatalf("a rejected delete changed data:\nbefore %v\nafter  %v", before, after)
				}
				return
			}
			if w.threadExists(sc.threadID) {
				t.Fatal("thread still exists")
			}
			for _, table := range []string{"messages", "agent_runs", "documents"} {
				if n := w.Count(`SELECT count(*) FROM public.`+table+` WHERE thread_id = $1`, sc.threadID); n != 0 {
					t.Fatalf("%d %s rows left", n, table)
				}
			}
			if !slices.Equal(del.Work.ThreadIDs, []string{sc.threadID}) {
				t.Fatalf("threads deleted = %v, want only %s", del.Work.ThreadIDs, sc.threadID)
			}
		})
	}
}

func TestDeleteLastThreadDeletesProjectAndRecordsOneTeardown(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	tests := []struct {
		name        string
		resourceExt string // sandbox via resources.external_id
		legacy      string // sandbox via projects.sandbox->>'id'
		wantSandbox string
	}{
		{"sandbox resource", "sb-resource", "", "sb-resource"},
		{"legacy sandbox jsonb", "", "sb-legacy", "sb-legacy"},
		{"resource wins over legacy", "sb-new", "sb-old", "sb-new"},
		{"no sandbox", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			owner := w.PersonalAccount()
			other := w.PersonalAccount()
			otherProject := w.Project(other, "", "")
			otherThread := w.Thread(other, otherProject, "")
			res := ""
			if tc.resourceExt != "" {
				res = w.Sandbox(owner, tc.resourceExt)
			}
			p := w.Project(owner, res, tc.legacy)
			t1 := w.Thread(owner, p, "")
			w.Content(t1, 10, 2, 2)
			outboxBefore := w.Count(`SELECT count(*) FROM thread_delete.outbox`)

			del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: []string{t1}, Caller: user(owner)})
			if err != nil {
				t.Fatal(err)
			}
			if del.Outcome(t1) != threads.OutcomeDeleted || !slices.Equal(del.Work.ProjectIDs, []string{p}) {
				t.Fatalf("outcome %v, projects deleted %v", del.Outcome(t1), del.Work.ProjectIDs)
			}
			if w.projectExists(p) {
				t.Fatal("project survived its last thread")
			}
			if !w.projectExists(otherProject) || !w.threadExists(otherThread) {
				t.Fatal("another account's project or thread was touched")
			}
			added := w.Count(`SELECT count(*) FROM thread_delete.outbox`) - outboxBefore
			if tc.wantSandbox == "" {
				if added != 1 || len(del.Teardowns) != 0 { // the Redis work row only
					t.Fatalf("teardown recorded for a project without sandbox: %d rows, %+v", added, del.Teardowns)
				}
				return
			}
			if added != 2 || len(del.Teardowns) != 1 { // the teardown and the Redis work
				t.Fatalf("want exactly one teardown, got %d rows, %+v", added, del.Teardowns)
			}
			td := del.Teardowns[0]
			if td.SandboxID != tc.wantSandbox || td.ProjectID != p || td.AccountID != owner || td.ThreadID != t1 || td.ResourceID != res {
				t.Fatalf("teardown = %+v", td)
			}
			if time.Since(td.RequestedAt) > time.Minute {
				t.Fatalf("requested_at = %v", td.RequestedAt)
			}
			if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = $1 AND status = 'pending' AND kind = 'sandbox_teardown'`, td.JobID); n != 1 {
				t.Fatal("outbox row is not pending under the job id")
			}
			if res != "" && w.Count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'active'`, res) != 1 {
				t.Fatal("resource must stay active until Daytona confirms")
			}
		})
	}
}

func TestDeleteSubAgentThreads(t *testing.T) {
	w := newWorld(t)
	owner := w.PersonalAccount()
	p := w.Project(owner, "", "")
	root := w.Thread(owner, p, "")
	child := w.Thread(owner, p, root)
	grandchild := w.Thread(owner, p, child)
	sibling := w.Thread(owner, p, "")
	for _, th := range []string{root, child, grandchild} {
		w.Content(th, 4, 2, 1) // agent runs (FK NO ACTION) on every level
	}
	del, err := w.store.Delete(context.Background(), threads.Request{ThreadIDs: []string{root}, Caller: user(owner)})
	if err != nil {
		t.Fatal(err)
	}
	if del.Outcome(root) != threads.OutcomeDeleted {
		t.Fatalf("outcome %v", del.Outcome(root))
	}
	if got, want := del.Work.ThreadIDs, sorted(root, child, grandchild); !slices.Equal(got, want) {
		t.Fatalf("thread ids = %v, want %v", got, want)
	}
	if del.Messages != 12 || del.Runs != 6 {
		t.Fatalf("messages %d runs %d, want 12 and 6", del.Messages, del.Runs)
	}
	if len(del.Work.ProjectIDs) != 0 || !w.threadExists(sibling) || !w.projectExists(p) {
		t.Fatal("sibling thread or project was removed")
	}
	if n := w.Count(`SELECT count(*) FROM public.agent_runs`); n != 0 {
		t.Fatalf("%d runs left", n)
	}
}

func TestDeleteIsOneRoundTrip(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	owner := w.PersonalAccount()
	stranger := w.PersonalAccount()
	p := w.Project(owner, w.Sandbox(owner, "sb-rt"), "")
	first, last := w.Thread(owner, p, ""), w.Thread(owner, p, "")
	w.Content(first, 20, 2, 2)

	// Warm the pool's only connection so that connection setup is not counted.
	if err := w.store.Pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // idle > 1s: pgxpool would ping here by default
	cases := []struct {
		name   string
		req    threads.Request
		expect threads.Outcome
	}{
		{"not found", threads.Request{ThreadIDs: []string{testenv.NewUUID()}, Caller: user(owner)}, threads.OutcomeNotFound},
		{"forbidden", threads.Request{ThreadIDs: []string{first}, Caller: user(stranger)}, threads.OutcomeForbidden},
		{"not last", threads.Request{ThreadIDs: []string{first}, Caller: user(owner)}, threads.OutcomeDeleted},
		{"last, with sandbox", threads.Request{ThreadIDs: []string{last}, Caller: user(owner)}, threads.OutcomeDeleted},
	}
	for _, tc := range cases {
		before := w.proxy.RoundTrips()
		del, err := w.store.Delete(ctx, tc.req)
		if err != nil {
			t.Fatal(err)
		}
		if got := del.Outcome(tc.req.ThreadIDs[0]); got != tc.expect {
			t.Fatalf("%s: outcome %v", tc.name, got)
		}
		if n := w.proxy.RoundTrips() - before; n != 1 {
			t.Errorf("%s: %d round trips to PostgreSQL, want 1", tc.name, n)
		}
	}
}

func TestDeleteReplacesADeadIdleConnection(t *testing.T) {
	w := newWorld(t)
	owner := w.PersonalAccount()
	t1 := w.Thread(owner, "", "")
	ctx := context.Background()
	if err := w.store.Pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	w.proxy.CutAll() // the idle pooled connection dies (as after a Lambda freeze)
	del, err := w.store.Delete(ctx, threads.Request{ThreadIDs: []string{t1}, Caller: user(owner)})
	if err != nil {
		t.Fatalf("delete over a dead pooled connection: %v", err)
	}
	if del.Outcome(t1) != threads.OutcomeDeleted || w.threadExists(t1) {
		t.Fatal("thread not deleted")
	}
}

func TestDeleteUnreachableDatabaseIsUnavailable(t *testing.T) {
	w := newWorld(t)
	w.proxy.Refuse(true)
	w.proxy.CutAll()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := w.store.Delete(ctx, threads.Request{ThreadIDs: []string{testenv.NewUUID()}, Caller: user(testenv.NewUUID())})
	if !errors.Is(err, threads.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// sorted returns ids in ascending order, as the store reports them.
func sorted(ids ...string) []string {
	return slices.Sorted(slices.Values(ids))
}

func (w *world) teardowns(project string) int {
	return w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'sandbox_teardown' AND payload->>'project_id' = $1`, project)
}
