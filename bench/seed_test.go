package bench

import (
	"context"
)

// shape is what one seeded project holds.
type shape struct {
	threads              int // threads in the project
	messages, runs, docs int // per thread
	// sandbox gives the project a sandbox resource, so that deleting its
	// last thread records and queues a teardown.
	sandbox bool
}

// typical is the project of the latency and throughput figures: two threads
// of 20 messages, 2 agent runs and 2 vector-store chunks each. Deleting one
// thread keeps the project.
var typical = shape{threads: 2, messages: 20, runs: 2, docs: 2}

// lastThread is a project whose only thread is deleted: the project and its
// sandbox go too.
var lastThread = shape{threads: 1, messages: 20, runs: 2, docs: 2, sandbox: true}

// fixture is one seeded project of a personal account of its own.
type fixture struct {
	owner, project string
	threads        []string
}

// seed creates a project of shape s, and the owner's Redis counters as
// Kortix keeps them (so that both our delete and the original's replay
// decrement real keys).
func (e *env) seed(s shape) fixture {
	e.tb.Helper()
	f := fixture{owner: e.PersonalAccount()}
	resource := ""
	if s.sandbox {
		resource = e.Sandbox(f.owner, "sb-"+f.owner[:8])
	}
	f.project = e.Project(f.owner, resource, "")
	for range s.threads {
		t := e.Thread(f.owner, f.project, "")
		e.Content(t, s.messages, s.runs, s.docs)
		f.threads = append(f.threads, t)
	}
	err := e.rdb.MSet(context.Background(),
		"thread_count:"+f.owner, s.threads, "project_count:"+f.owner, 1).Err()
	if err != nil {
		e.tb.Fatal(err)
	}
	return f
}

// seedN seeds n projects of shape s.
func (e *env) seedN(n int, s shape) []fixture {
	e.tb.Helper()
	out := make([]fixture, n)
	for i := range out {
		out[i] = e.seed(s)
	}
	return out
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
