package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// OutboxStore is the cleanup worker's and sweeper's view of
// thread_delete.outbox (migrations 0001 and 0003), on a pgx pool. Every
// method is one statement; times are the database's now(), so the clocks of
// concurrent Lambda instances never matter.
//
// The lease: Claim sets locked_until = now() + lease and a fresh lease_token
// on a row in the same statement that reads it, so of two deliveries of one
// job running at the same moment exactly one calls Daytona; the other is
// told Busy. Complete, CompleteTeardown and Fail act only where the row
// still carries the caller's token, and release the lease. A worker that
// dies mid-item leaves the lease to expire; the queue's redelivery comes
// later than that and takes the row over with a new token, after which the
// old holder, should it wake up, can neither release nor complete the row.
type OutboxStore struct {
	Pool *pgxpool.Pool
}

var _ cleanup.Outbox = (*OutboxStore)(nil)

// outboxErrorLen bounds last_error: provider error bodies can be long.
const outboxErrorLen = 2000

func outboxCause(s string) string {
	if len(s) > outboxErrorLen {
		return s[:outboxErrorLen]
	}
	return s
}

const outboxColumns = `id::text, kind, status, payload, attempts, sends, next_attempt_at, coalesce(last_error, ''), created_at`

// outboxColumnsOf is outboxColumns qualified by a table alias.
func outboxColumnsOf(alias string) string {
	a := alias + "."
	return a + "id::text, " + a + "kind, " + a + "status, " + a + "payload, " + a + "attempts, " + a + "sends, " +
		a + "next_attempt_at, coalesce(" + a + "last_error, ''), " + a + "created_at"
}

// scanEntry reads the outboxColumns of one row.
func scanEntry(r pgx.CollectableRow) (cleanup.Entry, error) {
	var e cleanup.Entry
	var payload []byte
	err := r.Scan(&e.ID, &e.Kind, &e.Status, &payload, &e.Attempts, &e.Sends, &e.NextAttemptAt, &e.LastError, &e.CreatedAt)
	e.Payload = payload
	return e, err
}

// Claim leases row id for lease under a fresh token when it is not done and
// not leased by someone else, and says how it found the row otherwise.
func (s *OutboxStore) Claim(ctx context.Context, id string, lease time.Duration) (cleanup.Entry, cleanup.Claim, error) {
	// The UPDATE claims; the UNION's second arm reports the row as it was
	// when nothing could be claimed (without its holder's token). A
	// concurrent claimer blocks on the row lock, then re-checks the WHERE
	// against the committed lease and finds the row busy.
	var (
		claimed bool
		e       cleanup.Entry
		payload []byte
	)
	err := func() error {
		return s.Pool.QueryRow(ctx, `
			WITH claimed AS (
				UPDATE thread_delete.outbox
				   SET locked_until = now() + $2::interval, lease_token = gen_random_uuid(), updated_at = now()
				 WHERE id = $1
				   AND status <> 'done'
				   AND (locked_until IS NULL OR locked_until <= now())
				RETURNING lease_token::text, `+outboxColumns+`
			)
			SELECT true, * FROM claimed
			UNION ALL
			SELECT false, '', `+outboxColumns+` FROM thread_delete.outbox
			 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM claimed)`,
			id, lease).Scan(&claimed, &e.LeaseToken, &e.ID, &e.Kind, &e.Status, &payload, &e.Attempts, &e.Sends, &e.NextAttemptAt, &e.LastError, &e.CreatedAt)
	}()
	e.Payload = payload
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return cleanup.Entry{}, cleanup.Missing, nil
	case err != nil:
		return cleanup.Entry{}, 0, fmt.Errorf("outbox: claim %s: %w", id, err)
	case claimed:
		return e, cleanup.Claimed, nil
	case e.Status == cleanup.StatusDone:
		return e, cleanup.AlreadyDone, nil
	default:
		return e, cleanup.Busy, nil
	}
}

// markDoneSQL is a CTE named "done" that completes outbox row $1 (counting
// the attempt that did it) and releases its lease, when $2 is still its
// lease token and it is not done yet.
const markDoneSQL = `
	done AS (
		UPDATE thread_delete.outbox
		   SET status = 'done', done_at = now(), updated_at = now(),
		       attempts = attempts + 1, locked_until = NULL
		 WHERE id = $1 AND lease_token = $2::uuid AND status <> 'done'
		RETURNING id
	)`

// heldSQL ends a statement whose CTE "changed" acted on row $1 under lease
// token $2: true when it did, or when the row is already done under that
// same token (a repeated call by the holder that completed it); false when
// another consumer's claim has replaced the token (or the row is gone).
// Both EXISTS see the statement's snapshot, taken before "changed" ran.
const heldSQL = `
	SELECT EXISTS (SELECT 1 FROM changed)
	    OR EXISTS (SELECT 1 FROM thread_delete.outbox WHERE id = $1 AND lease_token = $2::uuid AND status = 'done')`

// leaseToken is the token as a query argument: NULL for an empty token,
// which matches no row (a caller without a lease has lost it).
func leaseToken(l cleanup.Lease) *string {
	if l.Token == "" {
		return nil
	}
	return &l.Token
}

// execHeld runs a statement ending in heldSQL for lease l and turns its
// answer into nil or cleanup.ErrLeaseLost.
func (s *OutboxStore) execHeld(ctx context.Context, what string, l cleanup.Lease, sql string, args ...any) error {
	var held bool
	err := func() error {
		return s.Pool.QueryRow(ctx, sql, append([]any{l.ID, leaseToken(l)}, args...)...).Scan(&held)
	}()
	switch {
	case err != nil:
		return fmt.Errorf("outbox: %s %s: %w", what, l.ID, err)
	case !held:
		return fmt.Errorf("outbox: %s %s: %w", what, l.ID, cleanup.ErrLeaseLost)
	}
	return nil
}

// CompleteTeardown marks the sandbox's resource row deleted and the outbox
// row done in one statement, both only while l holds the row. The resource
// is found by t.ResourceID when the project referenced one, else (legacy
// projects.sandbox->>'id') by type 'sandbox' and external_id = t.SandboxID;
// there may be none.
func (s *OutboxStore) CompleteTeardown(ctx context.Context, l cleanup.Lease, t threads.Teardown) error {
	var resourceID *string
	if t.ResourceID != "" {
		resourceID = &t.ResourceID
	}
	return s.execHeld(ctx, "complete teardown", l, `
		WITH `+markDoneSQL+`,
		changed AS (SELECT id FROM done),
		resource AS (
			UPDATE public.resources
			   SET status = 'deleted', updated_at = now()
			 WHERE EXISTS (SELECT 1 FROM done)
			   AND status <> 'deleted'
			   AND CASE WHEN $3::uuid IS NOT NULL THEN id = $3::uuid
			            ELSE type = 'sandbox' AND external_id = $4 END
		)`+heldSQL, resourceID, t.SandboxID)
}

// Complete marks the row done and releases the lease, while l holds it.
func (s *OutboxStore) Complete(ctx context.Context, l cleanup.Lease) error {
	return s.execHeld(ctx, "complete", l, `
		WITH `+markDoneSQL+`,
		changed AS (SELECT id FROM done)`+heldSQL)
}

// Fail records a failed attempt and releases the lease, while l holds the
// row; with dead the row is also marked dead. A row already done is left
// alone.
func (s *OutboxStore) Fail(ctx context.Context, l cleanup.Lease, cause string, dead bool) error {
	return s.execHeld(ctx, "record failure of", l, `
		WITH changed AS (
			UPDATE thread_delete.outbox
			   SET attempts = attempts + 1, last_error = $3, locked_until = NULL, updated_at = now(),
			       status = CASE WHEN $4 THEN 'dead' ELSE status END
			 WHERE id = $1 AND lease_token = $2::uuid AND status <> 'done'
			RETURNING id
		)`+heldSQL, outboxCause(cause), dead)
}

// outboxDue is the sweeper's due rule for teardowns (see cleanup.Sweeper);
// $1 is ResendAfter. A row never re-sent (sends = 0) still carries its insert
// time, the moment delete-thread sent it, in next_attempt_at; after a
// re-send next_attempt_at is the time the next one is due. The
// `next_attempt_at <= now()` term lets the partial index
// outbox_pending_due_idx bound the scan.
const outboxDue = `
	kind = 'sandbox_teardown'
	AND status = 'pending'
	AND (locked_until IS NULL OR locked_until <= now())
	AND next_attempt_at <= now()
	AND (sends > 0 OR next_attempt_at <= now() - $1::interval)`

// ClaimDue claims up to limit due rows below the send cap, counting the
// re-send and moving next_attempt_at by the backoff in the same statement.
// SKIP LOCKED keeps overlapping sweeps off each other's rows, and a row
// committed by one sweep is no longer due for the other. The backoff is
// computed here as in cleanup.DuePolicy.Backoff.
func (s *OutboxStore) ClaimDue(ctx context.Context, p cleanup.DuePolicy, limit int) ([]cleanup.Entry, error) {
	var entries []cleanup.Entry
	err := func() error {
		rows, err := s.Pool.Query(ctx, `
			WITH due AS (
				SELECT id, sends, next_attempt_at FROM thread_delete.outbox
				 WHERE `+outboxDue+` AND sends < $2
				 ORDER BY next_attempt_at
				 LIMIT $3
				 FOR UPDATE SKIP LOCKED
			)
			UPDATE thread_delete.outbox o
			   SET sends = o.sends + 1,
			       next_attempt_at = now() + LEAST($1::interval * power(2, LEAST(o.sends + 1, 30)),
			                                       GREATEST($4::interval, $1::interval)),
			       updated_at = now()
			  FROM due
			 WHERE o.id = due.id
			RETURNING o.id::text, o.kind, o.status, o.payload, o.attempts, due.sends, due.next_attempt_at,
			          coalesce(o.last_error, ''), o.created_at`,
			p.ResendAfter, p.MaxSends, limit, p.MaxBackoff)
		if err != nil {
			return err
		}
		entries, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (cleanup.Entry, error) {
			var e cleanup.Entry
			var payload []byte
			err := r.Scan(&e.ID, &e.Kind, &e.Status, &payload, &e.Attempts, &e.Sends, &e.NextAttemptAt, &e.LastError, &e.CreatedAt)
			e.Payload = payload
			return e, err
		})
		return err
	}()
	if err != nil {
		return nil, fmt.Errorf("outbox: claim due rows: %w", err)
	}
	return entries, nil
}

// ResendFailed restores sends and next_attempt_at from before the claim and
// records the cause; the row stays pending and due. It does nothing when
// the row moved on meanwhile (completed, or claimed again).
func (s *OutboxStore) ResendFailed(ctx context.Context, e cleanup.Entry, cause string) error {
	err := func() error {
		_, err := s.Pool.Exec(ctx, `
			UPDATE thread_delete.outbox
			   SET sends = $2, next_attempt_at = $3, last_error = $4, updated_at = now()
			 WHERE id = $1 AND status = 'pending' AND sends = $2 + 1`,
			e.ID, e.Sends, e.NextAttemptAt, outboxCause(cause))
		return err
	}()
	if err != nil {
		return fmt.Errorf("outbox: undo re-send of %s: %w", e.ID, err)
	}
	return nil
}

// Bury marks dead the due rows that were re-sent p.MaxSends times already,
// keeping the last error in the message.
func (s *OutboxStore) Bury(ctx context.Context, p cleanup.DuePolicy) (int, error) {
	var n int64
	err := func() error {
		tag, err := s.Pool.Exec(ctx, `
			UPDATE thread_delete.outbox
			   SET status = 'dead', updated_at = now(),
			       last_error = format('gave up after %s re-sends; last error: %s', sends, coalesce(last_error, 'none'))
			 WHERE `+outboxDue+` AND sends >= $2`,
			p.ResendAfter, p.MaxSends)
		n = tag.RowsAffected()
		return err
	}()
	if err != nil {
		return 0, fmt.Errorf("outbox: bury exhausted rows: %w", err)
	}
	return int(n), nil
}

// ClaimCacheWork claims due Redis-work rows (cleanup.CachePolicy): pending,
// written at least Grace ago, and past next_attempt_at. In the same statement
// it counts the attempt and moves next_attempt_at by the backoff, so an
// overlapping sweep skips the rows (SKIP LOCKED, then no longer due) and a
// sweep that dies leaves them due again later. No lease: completing Redis
// work twice is harmless (its marker makes the second a no-op).
func (s *OutboxStore) ClaimCacheWork(ctx context.Context, p cleanup.CachePolicy, limit int) ([]cleanup.Entry, error) {
	var entries []cleanup.Entry
	err := func() error {
		rows, err := s.Pool.Query(ctx, `
			WITH due AS (
				SELECT id FROM thread_delete.outbox
				 WHERE status = 'pending'
				   AND next_attempt_at <= now()
				   AND kind IN ('redis_work', 'cache_repair')
				   AND created_at <= now() - $1::interval
				 ORDER BY next_attempt_at
				 LIMIT $3
				 FOR UPDATE SKIP LOCKED
			)
			UPDATE thread_delete.outbox o
			   SET attempts = o.attempts + 1,
			       next_attempt_at = now() + LEAST($1::interval * power(2, LEAST(o.attempts, 30)), $2::interval),
			       updated_at = now()
			  FROM due
			 WHERE o.id = due.id
			RETURNING `+outboxColumnsOf("o")+``,
			p.Grace, p.MaxBackoff, limit)
		if err != nil {
			return err
		}
		entries, err = pgx.CollectRows(rows, scanEntry)
		return err
	}()
	if err != nil {
		return nil, fmt.Errorf("outbox: claim due redis work: %w", err)
	}
	return entries, nil
}

// FinishCacheWork records the results of one batch of Redis work in one
// statement: done rows are completed, failed ones keep their cause (and are
// marked dead when retrying cannot help).
func (s *OutboxStore) FinishCacheWork(ctx context.Context, done []string, failed []cleanup.Failure) error {
	if len(done) == 0 && len(failed) == 0 {
		return nil
	}
	ids := append([]string(nil), done...)
	causes := make([]string, len(done), len(done)+len(failed))
	dead := make([]bool, len(done), len(done)+len(failed))
	for _, f := range failed {
		ids = append(ids, f.ID)
		causes = append(causes, outboxCause(f.Cause))
		dead = append(dead, f.Dead)
	}
	err := func() error {
		_, err := s.Pool.Exec(ctx, `
			UPDATE thread_delete.outbox o
			   SET status = CASE WHEN r.cause = '' THEN 'done' WHEN r.dead THEN 'dead' ELSE o.status END,
			       done_at = CASE WHEN r.cause = '' THEN now() ELSE o.done_at END,
			       last_error = CASE WHEN r.cause = '' THEN o.last_error ELSE r.cause END,
			       updated_at = now()
			  FROM unnest($1::uuid[], $2::text[], $3::boolean[]) AS r(id, cause, dead)
			 WHERE o.id = r.id AND o.status = 'pending'`, ids, causes, dead)
		return err
	}()
	if err != nil {
		return fmt.Errorf("outbox: record redis work results: %w", err)
	}
	return nil
}

// Prune deletes up to limit done rows whose done_at is older than
// retention, oldest first, in one statement (migration 0005's partial index
// outbox_done_at_idx finds them). SKIP LOCKED passes over any row another
// transaction holds, so the statement never waits; and since it locks only
// old done rows, which nothing else writes, no writer waits for it either.
func (s *OutboxStore) Prune(ctx context.Context, retention time.Duration, limit int) (int, error) {
	var n int64
	err := func() error {
		tag, err := s.Pool.Exec(ctx, `
			DELETE FROM thread_delete.outbox
			 WHERE id IN (SELECT id FROM thread_delete.outbox
			               WHERE status = 'done' AND done_at < now() - $1::interval
			               ORDER BY done_at
			               LIMIT $2
			               FOR UPDATE SKIP LOCKED)`, retention, limit)
		n = tag.RowsAffected()
		return err
	}()
	if err != nil {
		return 0, fmt.Errorf("outbox: prune done rows: %w", err)
	}
	return int(n), nil
}

// Backlog counts pending rows by kind, their oldest, and dead rows, in one
// aggregate over the rows not done (migration 0005's partial index
// outbox_open_kind_idx holds exactly those).
func (s *OutboxStore) Backlog(ctx context.Context) (cleanup.Backlog, error) {
	var (
		b                 cleanup.Backlog
		oldestT, oldestRW float64
	)
	err := func() error {
		return s.Pool.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE status = 'pending' AND kind = 'sandbox_teardown'),
			       count(*) FILTER (WHERE status = 'pending' AND kind <> 'sandbox_teardown'),
			       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending' AND kind = 'sandbox_teardown')), 0)::float8,
			       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'pending' AND kind <> 'sandbox_teardown')), 0)::float8,
			       count(*) FILTER (WHERE status = 'dead')
			  FROM thread_delete.outbox
			 WHERE status <> 'done'`).Scan(&b.PendingTeardowns, &b.PendingRedisWork, &oldestT, &oldestRW, &b.Dead)
	}()
	if err != nil {
		return b, fmt.Errorf("outbox: backlog: %w", err)
	}
	b.OldestTeardown = time.Duration(max(oldestT, 0) * float64(time.Second))
	b.OldestRedisWork = time.Duration(max(oldestRW, 0) * float64(time.Second))
	return b, nil
}
