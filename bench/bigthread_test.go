package bench

import (
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

// bulk returns a Seeder whose sessions run with session_replication_role =
// replica, which switches off ordinary triggers. Seeding a long thread
// through the message-counter trigger is quadratic within one statement:
// every row's trigger updates the same thread row, and each update has to
// walk the versions the earlier ones left (10k messages take ~5 s, 100k
// would take minutes). bigThread sets the counters itself afterwards, to
// exactly what the trigger would have left.
func (e *env) bulk() testenv.Seeder {
	if e.bulkSeeder == nil {
		e.bulkSeeder = &testenv.Seeder{TB: e.tb, Pool: testenv.Pool(e.tb, e.dbURL+"&session_replication_role=replica")}
	}
	return *e.bulkSeeder
}

// siblingIntact fails the benchmark unless the sibling thread still has its
// 20 messages and matching counters.
func (e *env) siblingIntact(sibling string) {
	e.tb.Helper()
	n := e.Count(`SELECT count(*) FROM public.threads t
		WHERE t.thread_id = $1 AND t.total_message_count = 20
		  AND (SELECT count(*) FROM public.messages m WHERE m.thread_id = t.thread_id) = 20`, sibling)
	if n != 1 {
		e.tb.Fatalf("sibling thread %s was touched", sibling)
	}
}
