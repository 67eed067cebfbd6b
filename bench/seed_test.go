package bench

import "context"

// shape is what one seeded project holds.
type shape struct {
	threads              int // threads in the project
	messages, runs, docs int // per thread
	// sandbox gives the project a sandbox resource, so that deleting its
	// last thread records and queues a teardown.
	sandbox bool
}

// typical is the project of the latency figures (issue 16's workload): two
// threads of 10 messages, 2 agent runs and 2 vector-store rows each.
// Deleting one thread keeps the project.
var typical = shape{threads: 2, messages: 10, runs: 2, docs: 2}

// lastThread is a project whose only thread is deleted: the project and its
// sandbox go too.
var lastThread = shape{threads: 1, messages: 10, runs: 2, docs: 2, sandbox: true}

// fixture is one seeded project of a personal account of its own.
type fixture struct {
	owner, project string
	threads        []string
}

// seed creates one project of shape s (see seedN).
func (e *env) seed(s shape) fixture {
	e.tb.Helper()
	return e.seedN(1, s)[0]
}

// seedN creates n projects of shape s, each of a personal account of its
// own (see seedProjects).
func (e *env) seedN(n int, s shape) []fixture {
	e.tb.Helper()
	return e.seedProjects("", n, s)
}

// seedProjects creates n projects of shape s, of owner's personal account
// ("" gives each project a personal account of its own), and the owners'
// Redis counters as Kortix keeps them (so that our delete, the floor and
// the original's replay all decrement real keys). It takes a handful of
// statements whatever n is: the messages go through the counter trigger, as
// the application's inserts do, and everything else is set-based.
func (e *env) seedProjects(owner string, n int, s shape) []fixture {
	e.tb.Helper()
	ctx := context.Background()
	accounts := n
	if owner != "" {
		accounts = 0
	}
	rows, err := e.Pool.Query(ctx, `
		WITH acc AS (
		    INSERT INTO basejump.accounts (id, primary_owner_user_id, name, slug, personal_account)
		    SELECT u, u, 'personal', u::text, true
		      FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, $1::int)) g
		    RETURNING id),
		au AS (
		    INSERT INTO basejump.account_user (user_id, account_id, account_role)
		    SELECT id, id, 'owner' FROM acc),
		owners AS (
		    SELECT id, 1::bigint AS k FROM acc
		    UNION ALL
		    SELECT $4::uuid, k FROM generate_series(1, $3::int) k WHERE $4::uuid IS NOT NULL),
		res AS (
		    INSERT INTO public.resources (account_id, type, external_id, status, config)
		    SELECT id, 'sandbox', 'sb-' || gen_random_uuid(), 'active', '{}' FROM owners WHERE $2::bool
		    RETURNING id, account_id)
		INSERT INTO public.projects (name, account_id, sandbox_resource_id, sandbox)
		SELECT 'project', o.id, r.id, '{}'
		  FROM owners o
		  LEFT JOIN (SELECT id, account_id, row_number() OVER (PARTITION BY account_id) AS k FROM res) r
		    ON r.account_id = o.id AND r.k = o.k
		RETURNING account_id::text, project_id::text`, accounts, s.sandbox, n, nullable(owner))
	if err != nil {
		e.tb.Fatal(err)
	}
	out := make([]fixture, 0, n)
	byProject := map[string]int{}
	for rows.Next() {
		var f fixture
		if err := rows.Scan(&f.owner, &f.project); err != nil {
			e.tb.Fatal(err)
		}
		byProject[f.project] = len(out)
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		e.tb.Fatal(err)
	}
	if len(out) != n {
		e.tb.Fatalf("seeded %d projects, want %d", len(out), n)
	}
	projects := make([]string, len(out))
	for i, f := range out {
		projects[i] = f.project
	}
	rows, err = e.Pool.Query(ctx, `
		INSERT INTO public.threads (account_id, project_id, name)
		SELECT p.account_id, p.project_id, 'thread'
		  FROM public.projects p, generate_series(1, $2::int)
		 WHERE p.project_id = ANY ($1::uuid[])
		RETURNING project_id::text, thread_id::text`, projects, s.threads)
	if err != nil {
		e.tb.Fatal(err)
	}
	var all []string
	for rows.Next() {
		var p, t string
		if err := rows.Scan(&p, &t); err != nil {
			e.tb.Fatal(err)
		}
		out[byProject[p]].threads = append(out[byProject[p]].threads, t)
		all = append(all, t)
	}
	if err := rows.Err(); err != nil {
		e.tb.Fatal(err)
	}
	e.contentOf(all, s.messages, s.runs, s.docs)

	counts := map[string]int{}
	for _, f := range out {
		counts[f.owner]++
	}
	pipe := e.rdb.Pipeline()
	for o, projects := range counts {
		pipe.MSet(ctx, "thread_count:"+o, projects*s.threads, "project_count:"+o, projects)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		e.tb.Fatal(err)
	}
	return out
}

// nullable is nil for "", for a NULL parameter.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// contentOf gives each thread messages messages, runs completed agent runs
// and docs vector-store rows, set-based. Messages go through the counter
// trigger.
func (e *env) contentOf(threads []string, messages, runs, docs int) {
	e.tb.Helper()
	if messages > 0 {
		e.Exec(`INSERT INTO public.messages (thread_id, type, is_llm_message, content)
			SELECT t, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END, g % 2 = 1,
			       jsonb_build_object('role', 'user', 'content', 'message ' || g)
			  FROM unnest($1::uuid[]) t, generate_series(1, $2::int) g`, threads, messages)
	}
	if runs > 0 {
		e.Exec(`INSERT INTO public.agent_runs (thread_id, status)
			SELECT t, 'completed' FROM unnest($1::uuid[]) t, generate_series(1, $2::int)`, threads, runs)
	}
	if docs > 0 {
		e.Exec(`INSERT INTO public.documents (account_id, thread_id, chunk_content, embedding)
			SELECT t.account_id, t.thread_id, 'chunk ' || g, ARRAY[0.1, 0.2, 0.3]::real[]
			  FROM public.threads t, generate_series(1, $2::int) g
			 WHERE t.thread_id = ANY ($1::uuid[])`, threads, docs)
	}
}

// analyze refreshes the planner's statistics after seeding, so that the
// measured deletes run with the plans a populated database gives them
// rather than those of the empty tables the database was created with.
func (e *env) analyze() {
	e.tb.Helper()
	e.Exec(`ANALYZE`)
}

// mustBeGone fails the benchmark if thread or any of its rows survived.
func (e *env) mustBeGone(thread string) {
	e.tb.Helper()
	n := e.Count(`SELECT (SELECT count(*) FROM public.threads WHERE thread_id = $1)
		+ (SELECT count(*) FROM public.messages WHERE thread_id = $1)
		+ (SELECT count(*) FROM public.agent_runs WHERE thread_id = $1)
		+ (SELECT count(*) FROM public.documents WHERE thread_id = $1)`, thread)
	if n != 0 {
		e.tb.Fatalf("thread %s: %d rows survived its delete", thread, n)
	}
}
