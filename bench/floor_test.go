package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"
)

// floor is the physical floor of a delete: the same rows removed, and the
// same Redis keys touched, with nothing else. One pipelined batch of three
// DELETEs (agent runs, vector-store rows, the thread; its messages go by the
// cascade, through Kortix's counter trigger) sent as one implicit
// transaction, so one round trip and one commit with its WAL flush; then
// one Redis pipeline (the owner's thread counter lowered, the account state
// and the thread's message history dropped). No access check, no lock, no
// outbox row, no response to build: what any implementation has to pay on
// this machine and this network. The pool and client have the service's
// settings (exec mode: no prepare round trip).
type floor struct {
	db  *pgxpool.Pool
	rdb goredis.UniversalClient
}

// floor returns the floor wired through r.
func (e *env) floor(r route) *floor {
	return &floor{db: e.pool(r), rdb: e.redisClient(r)}
}

// delete removes thread of owner's as the floor does and fails unless the
// thread was there.
func (f *floor) delete(ctx context.Context, owner, thread string) error {
	_, _, err := f.parts(ctx, owner, thread)
	return err
}

// parts is delete, returning how long its PostgreSQL and Redis round trips
// took.
func (f *floor) parts(ctx context.Context, owner, thread string) (pg, redis time.Duration, err error) {
	return f.partsMany(ctx, owner, []string{thread})
}

// deleteMany is delete for several threads of owner's at once: the same
// three DELETEs over all of them, one Redis pipeline.
func (f *floor) deleteMany(ctx context.Context, owner string, threads []string) error {
	_, _, err := f.partsMany(ctx, owner, threads)
	return err
}

func (f *floor) partsMany(ctx context.Context, owner string, threads []string) (pg, redis time.Duration, err error) {
	start := time.Now()
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM public.agent_runs WHERE thread_id = ANY ($1::uuid[])`, threads)
	b.Queue(`DELETE FROM public.documents WHERE thread_id = ANY ($1::uuid[])`, threads)
	b.Queue(`DELETE FROM public.threads WHERE thread_id = ANY ($1::uuid[])`, threads)
	br := f.db.SendBatch(ctx, b)
	var gone int64
	for range 3 {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return 0, 0, fmt.Errorf("floor: %w", err)
		}
		gone = tag.RowsAffected() // the last one is the thread's
	}
	if err := br.Close(); err != nil {
		return 0, 0, fmt.Errorf("floor: %w", err)
	}
	if gone != int64(len(threads)) {
		return 0, 0, fmt.Errorf("floor: %d of %d threads found", gone, len(threads))
	}
	pg = time.Since(start)
	start = time.Now()
	pipe := f.rdb.Pipeline()
	pipe.DecrBy(ctx, "thread_count:"+owner, int64(len(threads)))
	keys := []string{"cache:account_state:" + owner}
	for _, t := range threads {
		keys = append(keys, "message_history:"+t)
	}
	pipe.Del(ctx, keys...)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, 0, fmt.Errorf("floor: redis: %w", err)
	}
	return pg, time.Since(start), nil
}
