package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

// deleteSQL runs the whole delete: thread_delete.delete_threads_v1
// (functions/delete_threads_v1.sql) decides each requested id, takes its
// locks in PostgreSQL's own order, closes the sub-agent set under fresh
// snapshots, deletes, and records the follow-up (teardowns, Redis work) in
// the outbox.
// It is a function so that PostgreSQL plans its statements once per
// connection: the functions send unnamed statements, which RDS Proxy and
// transaction-mode poolers never pin, and so could not reuse plans
// otherwise. The SQL documents each step. Parameters: $1 the requested ids;
// $2 the caller's user id (JWT) or NULL; $3, $4 the API key's public part
// and secret hash, or NULL; $5 the JWT's session id when sessions must
// still exist, or NULL.
const deleteSQL = `SELECT thread_delete.delete_threads_v1($1::uuid[], $2::uuid, $3::text, $4::text, $5::uuid)`

// summary is the JSON the delete function returns.
type summary struct {
	Auth      string             `json:"auth"`
	Forbidden []string           `json:"forbidden"`
	Messages  int64              `json:"messages"`
	Runs      int64              `json:"runs"`
	Teardowns []threads.Teardown `json:"teardowns"`
	Work      *threads.CacheWork `json:"work"`
}

// Delete runs the settings and the delete function as one pipelined batch:
// the extended protocol's single Sync makes the batch one implicit
// transaction (any error rolls all of it back) and one network round trip.
// A batch that lost a deadlock or a serialization conflict was rolled back
// whole by the server, so it is sent once more after a few milliseconds
// (waitBeforeResend); a second loss is a 503. Nothing else is re-sent:
// after any other failure the server may have committed (a lost reply),
// and the answer is a 503 (see conncheck.go for how dead idle connections
// are avoided instead).
func (s *Store) Delete(ctx context.Context, req threads.Request) (threads.Deletion, error) {
	var userID, publicKey, secretHash, sessionID any
	if k := req.Caller.APIKey; k != nil {
		publicKey, secretHash = k.PublicKey, k.SecretHash
	} else {
		userID = req.Caller.UserID
		if req.Caller.SessionID != "" {
			sessionID = req.Caller.SessionID
		}
	}

	var sum summary
	sends := 0
	run := func() error {
		sends++
		sum = summary{}
		b := &pgx.Batch{}
		statementTimeout, lockTimeout := serverTimeouts(ctx)
		b.Queue(settingsSQL, statementTimeout, lockTimeout)
		b.Queue(deleteSQL, req.ThreadIDs, userID, publicKey, secretHash, sessionID)
		br := s.Pool.SendBatch(ctx, b)
		defer br.Close()
		if _, err := br.Exec(); err != nil {
			return err
		}
		var raw []byte
		if err := br.QueryRow().Scan(&raw); err != nil {
			return err
		}
		if err := json.Unmarshal(raw, &sum); err != nil {
			return fmt.Errorf("postgres: delete summary: %w", err)
		}
		return br.Close()
	}

	err := run()
	if isConflict(err) && waitBeforeResend(ctx) {
		err = run()
	}
	if err != nil {
		return threads.Deletion{}, classify(err)
	}
	switch sum.Auth {
	case "ok":
	case "invalid_api_key":
		return threads.Deletion{}, threads.ErrInvalidAPIKey
	case "session_revoked":
		return threads.Deletion{}, threads.ErrSessionRevoked
	default:
		return threads.Deletion{}, fmt.Errorf("postgres: delete summary: unknown auth %q", sum.Auth)
	}
	del := threads.Deletion{
		Forbidden:  sum.Forbidden,
		Messages:   sum.Messages,
		Runs:       sum.Runs,
		Teardowns:  sum.Teardowns,
		RoundTrips: sends,
	}
	if sum.Work != nil {
		del.Work = *sum.Work
	}
	return del, nil
}

// resendAfter is how long a transaction rolled back on a conflict waits
// before it is sent again, plus up to as much again at random. The
// transaction that survived the deadlock was woken by our rollback and has
// yet to take the row it was waiting for; a waiter's place in line holds
// only while that row stays locked, so a re-send that reaches the row first
// takes it and deadlocks with the survivor a second time (a single delete
// gets there in well under a millisecond).
const resendAfter = 5 * time.Millisecond

// waitBeforeResend waits resendAfter and a random part of it, and reports
// whether ctx still leaves time to send.
func waitBeforeResend(ctx context.Context) bool {
	t := time.NewTimer(resendAfter + rand.N(resendAfter))
	defer t.Stop()
	select {
	case <-t.C:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// isConflict reports a transaction that PostgreSQL rolled back to resolve a
// deadlock or a serialization conflict: sending it again is safe.
func isConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// settingsSQL gives the batch's transaction its limits, transaction-local
// (is_local = true), never at connection start: transaction-mode poolers
// (Supabase's, PgBouncer, RDS Proxy) refuse or pin sessions for startup
// parameters, and a session SET would leak to the next client of the server
// connection.
//
//   - statement_timeout ($1): when the caller's deadline passes, pgx
//     abandons the connection and asks the server to cancel on a second
//     connection; if that cancel request is lost (the Lambda environment is
//     frozen right after answering, or the connection cannot be opened), a
//     delete waiting on a lock would go on and commit after the caller was
//     told 503, and its Redis follow-up would wait for the sweeper. With
//     statement_timeout the server gives up by itself at the caller's
//     deadline. Without a deadline $1 is NULL, which makes set_config
//     restore the configured default for this transaction: a session value
//     another client of a pooled server connection left behind does not
//     apply.
//   - lock_timeout ($2): a lock held by a stuck transaction must not eat the
//     whole budget.
const settingsSQL = `SELECT set_config('statement_timeout', $1::text, true), set_config('lock_timeout', $2::text, true)`

// serverTimeoutMargin makes the server give up slightly before the caller
// does, so that its error (a 503 for the client) still arrives in time.
const serverTimeoutMargin = 50 * time.Millisecond

// maxLockWait bounds every lock wait of the delete.
const maxLockWait = 5 * time.Second

// serverTimeouts returns the statement_timeout (nil when ctx has no
// deadline) and lock_timeout settings, in milliseconds.
func serverTimeouts(ctx context.Context) (statement *string, lock string) {
	lockMS := maxLockWait.Milliseconds()
	dl, ok := ctx.Deadline()
	if !ok {
		return nil, strconv.FormatInt(lockMS, 10)
	}
	ms := max((time.Until(dl) - serverTimeoutMargin).Milliseconds(), 1) // 0 would mean no limit
	setting := strconv.FormatInt(ms, 10)
	return &setting, strconv.FormatInt(min(ms, lockMS), 10)
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
// flight. Usually nothing committed; when the commit was processed and
// only its reply was lost, the delete stands and its follow-up is done by
// the sweeper (the Redis work and teardowns are in the same transaction):
// the 503 the client gets is the one case the contract allows.
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
