package apigw_test

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

// Behind PgBouncer in transaction mode (as behind Supabase's pooler on port
// 6543 or RDS Proxy) one warm handler, with its one pool, answers a delete,
// a 404, a 403 and a last-thread delete exactly as it does on a direct
// connection, each in one round trip once warm, while another application on the same
// pooler makes each of its transactions run on a different server
// connection than the one before, last used by that other application.
func TestDeleteBehindTransactionModePgBouncer(t *testing.T) {
	bouncer := testenv.StartPgBouncer(t, 2)
	s := newStack(t, stackOptions{pgTarget: bouncer})
	bg := context.Background()
	// Another application on the same pooler (its own pool; no prepared
	// statements, which PgBouncer 1.18 cannot carry across server connections).
	other := testenv.Pool(t, testenv.ViaAddr(s.Pool.Config().ConnString(), bouncer)+
		"&application_name=other&default_query_exec_mode=exec&pool_max_conns=2")

	owner, stranger := s.PersonalAccount(), s.PersonalAccount()
	p := s.Project(owner, s.Sandbox(owner, "sb-pooled"), "")
	first, last := s.Thread(owner, p, ""), s.Thread(owner, p, "")
	s.Content(first, 4, 1, 2)
	s.Content(last, 2, 1, 1)
	deleted := func(th string) map[string]string {
		return map[string]string{"message": "Thread deleted successfully", "thread_id": th}
	}
	unchanged := func(t *testing.T, before map[string]int) {
		if after := s.Snapshot(); !maps.Equal(before, after) {
			t.Fatalf("a rejected request changed data:\nbefore %v\nafter  %v", before, after)
		}
	}

	steps := []struct {
		name    string
		thread  string
		headers map[string]string
		status  int
		body    map[string]string
		check   func(t *testing.T, before map[string]int)
	}{
		{"delete", first, bearer(owner), 200, deleted(first), func(t *testing.T, _ map[string]int) {
			for _, table := range []string{"threads", "messages", "agent_runs", "documents"} {
				if n := s.Count(`SELECT count(*) FROM public.`+table+` WHERE thread_id = $1`, first); n != 0 {
					t.Fatalf("%d rows of the deleted thread left in %s", n, table)
				}
			}
			if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, last) != 1 ||
				s.Count(`SELECT count(*) FROM public.messages WHERE thread_id = $1`, last) != 2 {
				t.Fatal("the other thread of the project lost rows")
			}
			if s.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p) != 1 {
				t.Fatal("project deleted while it still has a thread")
			}
		}},
		{"not found", first, bearer(owner), 404, map[string]string{"detail": "Thread not found"}, unchanged},
		{"forbidden", last, bearer(stranger), 403, map[string]string{"detail": "Not authorized to modify this thread"}, unchanged},
		{"last thread", last, bearer(owner), 200, deleted(last), func(t *testing.T, _ map[string]int) {
			if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, last) != 0 ||
				s.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p) != 0 {
				t.Fatal("the last thread or its project survived")
			}
			msgs := s.receive(t, 2)
			if len(msgs) != 1 || msgs[0].SandboxID != "sb-pooled" || msgs[0].ProjectID != p || msgs[0].ThreadID != last {
				t.Fatalf("queue = %+v, want one teardown of sb-pooled", msgs)
			}
			if s.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = $1 AND kind = 'sandbox_teardown' AND status = 'pending'
				AND payload->>'sandbox_id' = 'sb-pooled'`, msgs[0].JobID) != 1 {
				t.Fatal("no pending teardown outbox row for the message")
			}
		}},
	}

	var prev int32 // the server connection (backend pid) the previous delete ran on
	for i, st := range steps {
		// The other application takes both server connections, then gives
		// back the one the previous delete did not run on: the only one this
		// delete can get.
		var txs [2]pgx.Tx
		var pids [2]int32
		for i := range txs {
			tx, err := other.Begin(bg)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(bg) //nolint:errcheck
			if err := tx.QueryRow(bg, `SELECT pg_backend_pid()`).Scan(&pids[i]); err != nil {
				t.Fatal(err)
			}
			txs[i] = tx
		}
		if pids[0] == pids[1] {
			t.Fatalf("two open transactions share server connection %d", pids[0])
		}
		keep := 0
		if pids[1] == prev {
			keep = 1
		}
		free := 1 - keep
		if err := txs[free].Commit(bg); err != nil {
			t.Fatal(err)
		}

		before := s.Snapshot()
		trips := s.pgProxy.RoundTrips()
		expect(t, s.delete(t, st.thread, st.headers), st.status, st.body)
		if n := s.pgProxy.RoundTrips() - trips; i > 0 && n != 1 { // the first also logs in
			t.Errorf("%s: %d round trips to the pooler, want 1", st.name, n)
		}
		var app, query string
		if err := s.Pool.QueryRow(bg, `SELECT application_name, query FROM pg_stat_activity WHERE pid = $1`, pids[free]).Scan(&app, &query); err != nil {
			t.Fatal(err)
		}
		if app != "thread-delete" || !strings.Contains(query, "thread_delete.delete_thread") {
			t.Fatalf("%s: server connection %d last ran %q for %q, not the delete", st.name, pids[free], query, app)
		}
		if pids[free] == prev {
			t.Fatalf("%s: ran on the previous delete's server connection %d", st.name, prev)
		}
		prev = pids[free]
		if err := txs[keep].Commit(bg); err != nil {
			t.Fatal(err)
		}
		st.check(t, before)
	}
}
