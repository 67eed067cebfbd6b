package postgres_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
)

// indexScans returns how many scans PostgreSQL has counted on an index of
// the outbox (cumulative statistics, flushed by each backend shortly after
// it goes idle).
func (w *outboxWorld) indexScans(index string) int {
	w.TB.Helper()
	w.Exec(`SELECT pg_stat_clear_snapshot()`)
	return w.Count(`SELECT coalesce(sum(idx_scan), 0)::int FROM pg_stat_user_indexes WHERE schemaname = 'thread_delete' AND indexrelname = $1`, index)
}

// A week of deletes: 50,000 done rows past the retention are pruned in
// bounded batches, through migration 0005's index, while a writer keeps
// inserting and completing rows the way delete-thread and the worker do;
// the writer never waits for a lock (lock_timeout), and pending rows, dead
// rows and done rows inside the retention are never pruned.
func TestOutboxPruneLargeBacklog(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	const (
		retention = 7 * 24 * time.Hour
		backlog   = 50_000
		batch     = 1000
	)
	// The backlog, and the rows that must survive: old pending and dead
	// rows (one of them with a done_at, to prove status decides), done rows
	// inside the retention, and done rows either side of its edge.
	w.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, created_at, done_at)
	        SELECT 'redis_work', '{"thread_ids": []}', 'done', now() - interval '9 days', now() - interval '8 days' - g * interval '1 second'
	          FROM generate_series(1, $1) g`, backlog)
	w.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, created_at, done_at)
	        SELECT k, '{}', s, now() - interval '30 days', CASE WHEN g = 1 THEN now() - interval '30 days' END
	          FROM generate_series(1, 20) g,
	               (VALUES ('sandbox_teardown'), ('redis_work')) kinds(k),
	               (VALUES ('pending'), ('dead')) statuses(s)`)
	w.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, done_at)
	        SELECT 'sandbox_teardown', '{}', 'done', now() - g * interval '1 hour' FROM generate_series(1, 100) g`)
	w.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, done_at) VALUES
	        ('redis_work', '{"edge": "inside"}', 'done', now() - interval '7 days' + interval '5 minutes'),
	        ('redis_work', '{"edge": "outside"}', 'done', now() - interval '7 days' - interval '5 minutes')`)
	w.Exec(`ANALYZE thread_delete.outbox`)
	mustKeep := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE status <> 'done' OR done_at >= now() - interval '7 days' + interval '1 minute'`)
	if mustKeep != 80+100+1 {
		t.Fatalf("seeded %d rows to keep", mustKeep)
	}
	scansBefore := w.indexScans("outbox_done_at_idx")
	backlogScansBefore := w.indexScans("outbox_open_kind_idx")
	if b, err := w.store.Backlog(ctx); err != nil || b.PendingTeardowns != 20 || b.PendingRedisWork != 20 || b.Dead != 40 {
		t.Fatalf("backlog beside 50,000 done rows: %+v, %v", b, err)
	}
	start := time.Now()

	// The writer: its own connection, which gives up on any lock wait
	// longer than 100 ms with 55P03.
	conn, err := pgx.Connect(ctx, w.Pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SET lock_timeout = '100ms'`); err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int64
	stop, writerDone := make(chan struct{}), make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			var id string
			if err := conn.QueryRow(ctx, `INSERT INTO thread_delete.outbox (kind, payload) VALUES ('redis_work', '{"writer": true}') RETURNING id::text`).Scan(&id); err != nil {
				writerDone <- err
				return
			}
			if _, err := conn.Exec(ctx, `UPDATE thread_delete.outbox SET status = 'done', done_at = now() WHERE id = $1`, id); err != nil {
				writerDone <- err
				return
			}
			writes.Add(1)
		}
	}()
	waitWrites := func(n int64) {
		t.Helper()
		testenv.WaitFor(t, 10*time.Second, "the concurrent writer to write", func() bool {
			select {
			case err := <-writerDone:
				t.Fatalf("writer stopped: %v", err)
			default:
			}
			return writes.Load() >= n
		})
	}
	waitWrites(1)

	// Batch by batch, as the sweep does; between batches the writer must
	// make progress, so every batch runs while it writes.
	pruned, batches := 0, 0
	for {
		n, err := w.store.Prune(ctx, retention, batch)
		if err != nil {
			t.Fatal(err)
		}
		if n > batch {
			t.Fatalf("one prune deleted %d rows, over its bound of %d", n, batch)
		}
		pruned += n
		batches++
		waitWrites(writes.Load() + 1)
		if n < batch {
			break
		}
	}
	close(stop)
	t.Logf("pruned in %v while the writer wrote %d rows", time.Since(start), writes.Load())
	if err := <-writerDone; err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55P03" {
			t.Fatalf("the writer waited over 100 ms for a lock held by the prune: %v", err)
		}
		t.Fatal(err)
	}

	if pruned != backlog+1 || batches != (backlog+1)/batch+1 {
		t.Fatalf("pruned %d rows in %d batches, want %d in %d", pruned, batches, backlog+1, (backlog+1)/batch+1)
	}
	if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE status = 'done' AND done_at < now() - interval '7 days'`); n != 0 {
		t.Fatalf("%d done rows past the retention left", n)
	}
	kept := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE payload ? 'writer' IS NOT TRUE`)
	if kept != mustKeep {
		t.Fatalf("%d rows kept, want %d (pending, dead, and done within the retention)", kept, mustKeep)
	}
	if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE payload ? 'writer'`); int64(n) != writes.Load() {
		t.Fatalf("%d of the writer's %d rows left", n, writes.Load())
	}
	if n := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE payload->>'edge' = 'inside'`); n != 1 {
		t.Fatal("a row inside the retention was pruned")
	}
	// The batches were found through the partial index, and the backlog
	// read the open rows through its own, rather than scanning the table.
	// (A backend flushes its statistics when it exits: closing the store's
	// connections makes them visible at once.)
	w.store.Pool.Reset()
	testenv.WaitFor(t, 30*time.Second, "the prune's and the backlog's index scans in the statistics", func() bool {
		return w.indexScans("outbox_done_at_idx") >= scansBefore+batches &&
			w.indexScans("outbox_open_kind_idx") > backlogScansBefore
	})
}

// A prune skips rows another transaction holds, and does not wait for them.
func TestOutboxPruneSkipsLockedRows(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	w.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, done_at)
	        SELECT 'redis_work', '{}', 'done', now() - interval '10 days' - g * interval '1 minute' FROM generate_series(1, 30) g`)

	tx, err := w.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	rows, err := tx.Query(ctx, `SELECT id::text FROM thread_delete.outbox ORDER BY done_at LIMIT 10 FOR UPDATE`)
	if err != nil {
		t.Fatal(err)
	}
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(held) != 10 {
		t.Fatalf("locked %d rows: %v", len(held), err)
	}

	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := w.store.Prune(pctx, 7*24*time.Hour, 100)
	if err != nil || n != 20 {
		t.Fatalf("prune beside a transaction holding 10 rows: %d, %v; want the 20 others at once", n, err)
	}
	if got := w.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = ANY($1::uuid[])`, held); got != 10 {
		t.Fatalf("%d of the 10 held rows left", got)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := w.store.Prune(ctx, 7*24*time.Hour, 100); err != nil || n != 10 {
		t.Fatalf("after the release: pruned %d, %v; want the 10", n, err)
	}
}

func TestOutboxBacklog(t *testing.T) {
	t.Parallel()
	w := newOutboxWorld(t)
	ctx := context.Background()
	if b, err := w.store.Backlog(ctx); err != nil || b != (cleanup.Backlog{}) {
		t.Fatalf("empty outbox: %+v, %v", b, err)
	}
	w.Exec(`INSERT INTO thread_delete.outbox (kind, payload, status, created_at) VALUES
	        ('sandbox_teardown', '{}', 'pending', now() - interval '45 minutes'),
	        ('sandbox_teardown', '{}', 'pending', now() - interval '1 minute'),
	        ('sandbox_teardown', '{}', 'dead',    now() - interval '3 days'),
	        ('sandbox_teardown', '{}', 'done',    now() - interval '5 days'),
	        ('redis_work',       '{}', 'pending', now() - interval '90 seconds'),
	        ('redis_work',       '{}', 'pending', now()),
	        ('cache_repair',     '{}', 'pending', now() - interval '2 hours'),
	        ('redis_work',       '{}', 'dead',    now() - interval '1 day'),
	        ('redis_work',       '{}', 'done',    now() - interval '9 days')`)
	b, err := w.store.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	near := func(got, want time.Duration) bool { return got >= want && got < want+time.Minute }
	if b.PendingTeardowns != 2 || b.PendingRedisWork != 3 || b.Dead != 2 ||
		!near(b.OldestTeardown, 45*time.Minute) || !near(b.OldestRedisWork, 2*time.Hour) {
		t.Fatalf("backlog %+v; want 2 pending teardowns (oldest 45m), 3 Redis work (the legacy repair's 2h), 2 dead", b)
	}
}
