package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Store is the PostgreSQL side of threads.Deleter.
type Store struct {
	Pool *pgxpool.Pool
}

var _ threads.Store = (*Store)(nil)

// deleteSQL runs the whole delete: thread_delete.delete_thread (migration
// 0002, a function so that its plans are cached per connection) first locks
// the thread's project row, so that deletes of the same project's threads
// serialise and inserts of new threads into the project (whose foreign-key
// check takes a KEY SHARE lock on it) wait. Under READ COMMITTED its next
// statement takes its snapshot only after this lock is granted, so it sees
// every delete that committed meanwhile: that is what makes the "was this
// the last thread?" decision race-free. That statement is a single one of
// data-modifying CTEs. Parameters: $1 thread id; $2 caller user id (JWT) or
// NULL; $3, $4 the API key's public part and secret hash, or NULL.
//
//   - key/caller: the API key, when given, is resolved to its account's
//     primary owner here rather than in a separate query. The hashes are
//     compared through sha256 on both sides, so the comparison's timing does
//     not depend on how many leading characters of the stored hash match.
//   - target: the thread, row-locked (a concurrent delete of the same thread
//     waits, then finds nothing: 404, never a double delete).
//   - allowed: the write rule — admin/super_admin, the owning user, or a
//     member of the owning account. Public projects grant nothing.
//   - doomed: the thread and its descendant sub-agent threads.
//   - agent runs (FK NO ACTION, so they must go explicitly) and documents
//     (explicitly too: the composite foreign key does not cover rows whose
//     account_id is NULL) are deleted, then the threads; their messages go
//     by ON DELETE CASCADE. Kortix's counter trigger fires once per message
//     either way, after the thread row is gone, so each firing updates
//     nothing; it is most of the cost of a long thread (make bench: Order). An
//     explicit DELETE of the messages as well made PostgreSQL visit every
//     message twice (the cascade scans again what the statement deleted):
//     23% more work outside the trigger at 100k messages.
//   - Rows are matched with = ANY (ARRAY(SELECT ... FROM doomed)) rather
//     than joined with doomed: the planner guesses a recursive CTE at ten
//     times its seed, and with that guess it hashed whole tables instead of
//     using the thread_id indexes (a typical delete took 1 ms longer).
//   - The number of messages deleted is read from the threads' own
//     counters (total_message_count, kept by that trigger): no scan.
//   - project: deleted only when no thread outside doomed remains in it; its
//     sandbox teardown is written to the outbox in the same transaction.
//   - touch_key: last_used_at at most once a minute, and only when the
//     thread exists (a 404 writes nothing).
const deleteSQL = `SELECT * FROM thread_delete.delete_thread($1::uuid, $2::uuid, $3::text, $4::text)`

// Delete runs the lock and the delete statement as one pipelined batch: the
// extended protocol's single Sync makes the batch one implicit transaction
// (any error rolls all of it back) and one network round trip.
func (s *Store) Delete(ctx context.Context, req threads.Request) (threads.Deletion, error) {
	var userID, publicKey, secretHash any
	if k := req.Caller.APIKey; k != nil {
		publicKey, secretHash = k.PublicKey, k.SecretHash
	} else {
		userID = req.Caller.UserID
	}

	var del threads.Deletion
	run := func() error {
		del = threads.Deletion{}
		b := &pgx.Batch{}
		b.Queue(setTimeoutsSQL, serverTimeout(ctx), lockTimeout)
		b.Queue(deleteSQL, req.ThreadID, userID, publicKey, secretHash)
		br := s.Pool.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var (
			authenticated, found, allowed bool
			accountID, projectID, jobID   *string
			payload                       []byte
			touched                       int64
		)
		if err := br.QueryRow().Scan(&authenticated, &found, &allowed, &accountID, &projectID,
			&del.ThreadIDs, &del.Messages, &del.Runs, &del.ProjectDeleted, &jobID, &payload, &touched); err != nil {
			return err
		}
		switch {
		case !authenticated:
			del.Outcome = threads.OutcomeInvalidAPIKey
		case !found:
			del.Outcome = threads.OutcomeNotFound
		case !allowed:
			del.Outcome = threads.OutcomeForbidden
		default:
			del.Outcome = threads.OutcomeDeleted
		}
		del.AccountID, del.ProjectID = deref(accountID), deref(projectID)
		if jobID != nil {
			t := threads.Teardown{}
			if err := json.Unmarshal(payload, &t); err != nil {
				return fmt.Errorf("postgres: outbox payload: %w", err)
			}
			t.JobID = *jobID
			del.Teardown = &t
		}
		return br.Close()
	}

	if err := retryUnsent(ctx, run); err != nil {
		return threads.Deletion{}, classify(err)
	}
	return del, nil
}

// setTimeoutsSQL gives the batch's transaction its server-side time limits,
// inside the transaction (is_local), never at connection start: a
// transaction-mode pooler (PgBouncer, Supabase's on port 6543, RDS Proxy)
// tolerates no such startup parameter (PgBouncer refuses the connection),
// and hands each transaction whichever server connection is free.
//
//   - statement_timeout: when the caller's deadline passes, pgx abandons the
//     connection and asks the server to cancel the statement on a second
//     connection; if that cancel request is lost (the Lambda environment is
//     frozen right after answering, or the connection cannot be opened), a
//     delete waiting on a lock would go on and commit after the caller was
//     told 503 "nothing changed", and its Redis follow-up would never run.
//     With statement_timeout the server gives up by itself at the caller's
//     deadline. Without a deadline $1 is NULL, which makes set_config restore
//     the connection's configured default for this transaction (rather than
//     a session SET another client of a pooler left on the server
//     connection).
//   - lock_timeout: a lock held by a stuck transaction must not eat the whole
//     Lambda budget: give up and answer 503 instead.
const setTimeoutsSQL = `SELECT set_config('statement_timeout', $1::text, true), set_config('lock_timeout', $2::text, true)`

// lockTimeout is the delete's lock_timeout (see setTimeoutsSQL).
const lockTimeout = "5s"

// serverTimeoutMargin makes the server give up slightly before the caller
// does, so that its error (a 503 for the client) still arrives in time.
const serverTimeoutMargin = 50 * time.Millisecond

// serverTimeout returns the statement_timeout setting, in milliseconds,
// matching ctx's deadline; nil (the configured default) when ctx has none.
func serverTimeout(ctx context.Context) *string {
	dl, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	ms := (time.Until(dl) - serverTimeoutMargin).Milliseconds()
	setting := strconv.FormatInt(max(ms, 1), 10) // 0 would mean no limit
	return &setting
}

// RecordCacheRepair stores an invalidation that failed inline, for the
// cleanup worker. It costs a second round trip, paid only on that failure.
func (s *Store) RecordCacheRepair(ctx context.Context, inv threads.Invalidation, cause string) error {
	payload, err := json.Marshal(inv)
	if err != nil {
		return err
	}
	return classify(retryUnsent(ctx, func() error {
		_, err := s.Pool.Exec(ctx, `
			INSERT INTO thread_delete.outbox (kind, payload, last_error)
			VALUES ('cache_repair', $1::jsonb, $2::text)`, string(payload), truncate(cause, 500))
		return err
	}))
}

// classify wraps errors that mean "the database could not be reached or
// did not answer in time" in threads.ErrUnavailable (a 503 with Retry-After);
// anything else stays an internal error.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if isUnavailable(err) {
		return fmt.Errorf("%w: %w", threads.ErrUnavailable, err)
	}
	return err
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || pgconn.Timeout(err) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57014", // query_canceled (statement_timeout)
			"55P03",                   // lock_not_available (lock_timeout)
			"57P01", "57P02", "57P03", // shutdown, crash, cannot connect now
			"53300",          // too_many_connections
			"40001", "40P01": // serialization failure, deadlock: safe to retry
			return true
		}
		return false
	}
	// Connection closed mid-flight (unexpected EOF and the like).
	return pgconn.SafeToRetry(err) || isClosedConn(err)
}

// isClosedConn reports a connection that broke while the batch was in
// flight. The transaction cannot have committed without us reading its
// result... except in the rare case the COMMIT was processed and the answer
// lost; then a retry by the client gets a 404, which is still correct.
func isClosedConn(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"unexpected EOF", "conn closed", "connection reset", "broken pipe"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
