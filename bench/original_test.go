package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
)

// original replays what the original Kortix handler sends to PostgreSQL
// and Redis for DELETE /threads/{thread_id} (DESIGN.md §2): in its order,
// one call at a time, every statement committed on its own; the deletes
// each in a transaction of their own (BEGIN, statement, COMMIT), as the
// original's session per call runs them. Deleting 1 of 2 threads is 13
// PostgreSQL and 3 Redis round trips.
//
// It uses the same pool settings and Redis client as the service (exec
// mode: one round trip per statement, no prepare, no ping), so that the
// comparison measures the query pattern and nothing else. Parts of the
// original are left out, all in its favour: the transaction its reads run
// in too (a BEGIN and a ROLLBACK around each), the inline Daytona call when
// the last thread goes (ours hands the teardown to SQS, which is measured),
// and any cache keys beyond the counters it reads and writes.
type original struct {
	db  *pgxpool.Pool
	rdb goredis.UniversalClient
}

// originalAccessSQL is the original's single access-check query: the
// caller is an admin, the owning user, or a member of the owning account.
const originalAccessSQL = `
SELECT t.account_id = $2::uuid
    OR EXISTS (SELECT 1 FROM public.user_roles r
                WHERE r.user_id = $2::uuid AND r.role IN ('admin', 'super_admin'))
    OR EXISTS (SELECT 1 FROM basejump.account_user au
                WHERE au.user_id = $2::uuid AND au.account_id = t.account_id)
  FROM public.threads t
 WHERE t.thread_id = $1::uuid`

// delete replays one request of caller (a user id) for thread and reports
// whether the project went with it.
func (o *original) delete(ctx context.Context, thread, caller string) (projectDeleted bool, err error) {
	var allowed bool
	if err := o.db.QueryRow(ctx, originalAccessSQL, thread, caller).Scan(&allowed); err != nil {
		return false, fmt.Errorf("original: access check: %w", err)
	}
	if !allowed {
		return false, errors.New("original: access denied")
	}
	var project *string
	if err := o.db.QueryRow(ctx, `SELECT project_id::text FROM public.threads WHERE thread_id = $1::uuid`, thread).Scan(&project); err != nil {
		return false, fmt.Errorf("original: project lookup: %w", err)
	}
	// Three deletes, three commits: the original runs each in a database
	// session of its own that begins a transaction, executes and commits
	// (core/threads/repo.py, execute_mutate through SQLAlchemy and asyncpg),
	// so each costs three round trips. The messages go while their thread
	// still exists, so the counter trigger updates the thread row once per
	// message.
	for _, sql := range []string{
		`DELETE FROM public.agent_runs WHERE thread_id = $1::uuid`,
		`DELETE FROM public.messages WHERE thread_id = $1::uuid`,
		`DELETE FROM public.threads WHERE thread_id = $1::uuid`,
	} {
		if err := o.commitOne(ctx, sql, thread); err != nil {
			return false, fmt.Errorf("original: %s: %w", sql, err)
		}
	}
	if _, err := o.db.Exec(ctx, `DELETE FROM public.documents WHERE thread_id = $1::uuid`, thread); err != nil { // the embeddings
		return false, fmt.Errorf("original: delete embeddings: %w", err)
	}
	if err := o.counter(ctx, "thread_count:"+caller); err != nil {
		return false, err
	}
	if project == nil {
		return false, nil
	}
	var left int
	if err := o.db.QueryRow(ctx, `SELECT count(*) FROM public.threads WHERE project_id = $1::uuid`, *project).Scan(&left); err != nil {
		return false, fmt.Errorf("original: threads left: %w", err)
	}
	if left > 0 {
		return false, nil
	}
	// The last thread went: read the sandbox (its Daytona teardown is not
	// replayed), delete the project, adjust the project counter.
	var resource *string
	var sandbox []byte
	if err := o.db.QueryRow(ctx, `SELECT sandbox_resource_id::text, sandbox FROM public.projects WHERE project_id = $1::uuid`, *project).Scan(&resource, &sandbox); err != nil {
		return false, fmt.Errorf("original: read sandbox: %w", err)
	}
	if err := o.commitOne(ctx, `DELETE FROM public.projects WHERE project_id = $1::uuid`, *project); err != nil {
		return false, fmt.Errorf("original: delete project: %w", err)
	}
	return true, o.counter(ctx, "project_count:"+caller)
}

// commitOne runs sql in a transaction of its own: BEGIN, the statement and
// COMMIT, one round trip each, as the original's session per call does.
func (o *original) commitOne(ctx context.Context, sql string, arg string) error {
	tx, err := o.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(ctx, sql, arg); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// counter is the original's counter update: a GET, a DECR when the key was
// there, then a DEL of the same key — each its own round trip.
func (o *original) counter(ctx context.Context, key string) error {
	err := o.rdb.Get(ctx, key).Err()
	switch {
	case err == nil:
		if err := o.rdb.Decr(ctx, key).Err(); err != nil {
			return fmt.Errorf("original: DECR %s: %w", key, err)
		}
	case !errors.Is(err, goredis.Nil):
		return fmt.Errorf("original: GET %s: %w", key, err)
	}
	if err := o.rdb.Del(ctx, key).Err(); err != nil {
		return fmt.Errorf("original: DEL %s: %w", key, err)
	}
	return nil
}

// original returns the replay wired through r.
func (e *env) original(r route) *original {
	return &original{db: e.pool(r), rdb: e.redisClient(r)}
}

// replay runs the original's sequence for thread as its owner, returns how
// long it took and whether the project went, and fails the benchmark on any
// error.
func (e *env) replay(o *original, owner, thread string) (time.Duration, bool) {
	e.tb.Helper()
	start := time.Now()
	gone, err := o.delete(context.Background(), thread, owner)
	took := time.Since(start)
	if err != nil {
		e.tb.Fatal(err)
	}
	return took, gone
}
