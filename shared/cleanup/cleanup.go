// Package cleanup completes the post-commit work that deleting threads
// leaves behind: tearing down deleted projects' sandboxes, and the Redis work
// (counters, caches, agent stop signals) when it was not applied inline. The
// work is recorded in the outbox inside the delete transaction. A queue
// delivers teardowns to the Worker at least once, and the Sweeper puts them
// back on the queue when they stayed pending too long; the Sweeper completes
// Redis work in place.
//
// The package knows nothing of AWS, PostgreSQL, Redis or HTTP: it talks to
// them through the small ports below, which sibling packages implement
// (postgres.OutboxStore, daytona.Client, sqs.Publisher, the Redis cache).
package cleanup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Kinds of outbox work, as stored in thread_delete.outbox.kind.
const (
	KindTeardown = "sandbox_teardown"
	// KindRedisWork is the Redis follow-up every delete records
	// (threads.CacheWork).
	KindRedisWork = "redis_work"
	// KindCacheRepair is the legacy form of Redis work, recorded by earlier
	// versions only when their inline invalidation failed (payload: one
	// thread's invalidation). It is completed like KindRedisWork.
	KindCacheRepair = "cache_repair"
)

// Outbox row statuses.
const (
	StatusPending = "pending"
	StatusDone    = "done"
	StatusDead    = "dead"
)

// Entry is one outbox row.
type Entry struct {
	ID     string
	Kind   string
	Status string
	// Payload is the row's JSON: a threads.Teardown (without job id) for a
	// teardown, a threads.CacheWork (without job id) for Redis work, a
	// legacyInvalidation for a legacy cache repair.
	Payload       json.RawMessage
	Attempts      int
	Sends         int
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
	// LeaseToken identifies the lease Claim granted on the row; it is empty
	// in entries that were not claimed (Busy, AlreadyDone, ClaimDue).
	LeaseToken string
}

// Lease names the lease a consumer holds on one outbox row: the row and the
// token its Claim was granted. Completing or failing the row needs it.
type Lease struct {
	ID    string
	Token string
}

// Lease returns the lease a Claim granted on e.
func (e Entry) Lease() Lease { return Lease{ID: e.ID, Token: e.LeaseToken} }

// ErrLeaseLost is returned by Complete, CompleteTeardown and Fail when the
// caller's lease ran out and another consumer claimed the row since (or
// completed it): nothing was changed. The row is the other consumer's now;
// the caller must not count the item as done.
var ErrLeaseLost = errors.New("outbox: lease lost: the row was taken over by another consumer")

// Teardown decodes the payload of a sandbox_teardown entry. The job id is
// the row id, which the payload does not repeat.
func (e Entry) Teardown() (threads.Teardown, error) {
	var t threads.Teardown
	if err := json.Unmarshal(e.Payload, &t); err != nil {
		return t, fmt.Errorf("teardown payload: %w", err)
	}
	t.JobID = e.ID
	if t.SandboxID == "" {
		return t, errors.New("teardown payload: no sandbox_id")
	}
	return t, nil
}

// legacyInvalidation is the payload of a legacy cache_repair row.
type legacyInvalidation struct {
	AccountID      string   `json:"account_id"`
	ProjectID      string   `json:"project_id"`
	ThreadIDs      []string `json:"thread_ids"`
	ProjectDeleted bool     `json:"project_deleted"`
}

// CacheWork decodes the payload of a redis_work or (legacy) cache_repair
// entry. The work's id is the row id.
func (e Entry) CacheWork() (threads.CacheWork, error) {
	var w threads.CacheWork
	switch e.Kind {
	case KindRedisWork:
		if err := json.Unmarshal(e.Payload, &w); err != nil {
			return w, fmt.Errorf("redis work payload: %w", err)
		}
	case KindCacheRepair:
		var inv legacyInvalidation
		if err := json.Unmarshal(e.Payload, &inv); err != nil {
			return w, fmt.Errorf("cache repair payload: %w", err)
		}
		w.ThreadIDs = inv.ThreadIDs
		delta := threads.AccountDelta{AccountID: inv.AccountID, Threads: len(inv.ThreadIDs)}
		if inv.ProjectDeleted && inv.ProjectID != "" {
			w.ProjectIDs = []string{inv.ProjectID}
			delta.Projects = 1
		}
		if inv.AccountID != "" {
			w.Accounts = []threads.AccountDelta{delta}
		}
	default:
		return w, fmt.Errorf("outbox row of kind %q holds no Redis work", e.Kind)
	}
	w.ID = e.ID
	if len(w.Accounts) == 0 && len(w.ThreadIDs) == 0 && len(w.ProjectIDs) == 0 && len(w.StopRuns) == 0 {
		return w, errors.New("redis work payload: names no account, thread, project or agent run")
	}
	return w, nil
}

// Claim is how a Claim call found the row.
type Claim int

const (
	// Claimed: the row was pending (or dead) and is now leased to the caller.
	Claimed Claim = iota + 1
	// AlreadyDone: the work was completed before; nothing to do.
	AlreadyDone
	// Busy: another consumer holds the row's lease right now.
	Busy
	// Missing: no such row.
	Missing
)

func (c Claim) String() string {
	switch c {
	case Claimed:
		return "claimed"
	case AlreadyDone:
		return "already_done"
	case Busy:
		return "busy"
	case Missing:
		return "missing"
	}
	return "unknown"
}

// Outbox is the durable record of post-commit work.
type Outbox interface {
	// Claim loads row id and, when it is not done and nobody else holds it,
	// leases it to the caller until now+lease under a fresh token
	// (Entry.Lease), so that a duplicate delivery processed at the same
	// moment does not repeat the work. Rows marked dead are claimable: a
	// message redriven by an operator gets one more go.
	//
	// The three calls below act only while l is still the row's latest
	// lease, expired or not; once another consumer has claimed the row they
	// change nothing and return ErrLeaseLost. Repeating a completion that
	// succeeded returns nil.
	Claim(ctx context.Context, id string, lease time.Duration) (Entry, Claim, error)
	// CompleteTeardown marks the sandbox's public.resources row deleted
	// (by resource id, else by external id = sandbox id) and the outbox row
	// done, atomically, and releases the lease.
	CompleteTeardown(ctx context.Context, l Lease, t threads.Teardown) error
	// Complete marks the row done and releases the lease.
	Complete(ctx context.Context, l Lease) error
	// Fail records a failed attempt (attempts+1, last_error) and releases the
	// lease. With dead it also marks the row dead: retrying cannot help. A
	// row already done is left alone.
	Fail(ctx context.Context, l Lease, cause string, dead bool) error

	// ClaimDue is the sweeper's claim: it picks up to limit pending rows,
	// not leased, that are due (see Sweeper) and still below maxSends
	// re-sends, and in the same statement counts the re-send (sends+1) and
	// moves next_attempt_at to the time the backoff allows the next one.
	// It returns the rows as they were before the update.
	ClaimDue(ctx context.Context, p DuePolicy, limit int) ([]Entry, error)
	// ResendFailed undoes ClaimDue for one row whose message could not be
	// sent: sends and next_attempt_at go back to the values in e, and cause
	// is recorded, so the next sweep tries again and the failure does not
	// count towards the cap.
	ResendFailed(ctx context.Context, e Entry, cause string) error
	// Bury marks dead the due rows that have been re-sent maxSends times
	// already, recording why, and returns how many.
	Bury(ctx context.Context, p DuePolicy) (int, error)

	// ClaimCacheWork picks up to limit pending Redis-work rows that are
	// due (see CachePolicy) and, in the same statement, counts the attempt
	// and moves next_attempt_at by the backoff, so that an overlapping sweep
	// skips them and a sweep that dies leaves them due again later.
	ClaimCacheWork(ctx context.Context, p CachePolicy, limit int) ([]Entry, error)
	// FinishCacheWork marks done the rows whose work is complete and records
	// the cause on the others (dead when retrying cannot help), in one
	// statement.
	FinishCacheWork(ctx context.Context, done []string, failed []Failure) error

	// Prune deletes up to limit done rows completed more than retention
	// ago, oldest first, and returns how many. It is one statement that
	// skips rows another transaction has locked, so it holds its row locks
	// for one batch only and never waits for, or blocks, the writers of
	// new rows.
	Prune(ctx context.Context, retention time.Duration, limit int) (int, error)
	// Backlog reports the rows not done, in one statement.
	Backlog(ctx context.Context) (Backlog, error)
}

// Backlog is the outbox's unfinished work, as the sweep reports it.
// Legacy cache_repair rows count as Redis work.
type Backlog struct {
	PendingTeardowns int
	PendingRedisWork int
	// OldestTeardown and OldestRedisWork are the ages of the oldest pending
	// row of each kind (since the delete that wrote it); 0 when none.
	OldestTeardown  time.Duration
	OldestRedisWork time.Duration
	// Dead counts dead rows of every kind.
	Dead int
}

// Failure is the failed attempt of one outbox row.
type Failure struct {
	ID    string
	Cause string
	// Dead marks the row dead: retrying cannot help (a corrupt payload).
	Dead bool
}

// CachePolicy says when a pending Redis-work row is due: Grace after it
// was written (the inline application has had its chance by then; applying
// the repair earlier would be harmless but needless), and after a failed
// attempt Grace·2^attempts, capped at MaxBackoff. A Redis outage keeps rows
// due and never makes them dead.
type CachePolicy struct {
	Grace      time.Duration
	MaxBackoff time.Duration
}

// DuePolicy says when a pending row is due for a re-send; see Sweeper.
type DuePolicy struct {
	ResendAfter time.Duration
	MaxBackoff  time.Duration
	MaxSends    int
}

// Backoff is the wait after the sends-th re-send before the next one:
// ResendAfter·2^sends, capped at MaxBackoff (but never below ResendAfter).
func (p DuePolicy) Backoff(sends int) time.Duration {
	limit := max(p.MaxBackoff, p.ResendAfter)
	d := p.ResendAfter
	for i := 0; i < sends && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// Destroyer deletes a sandbox at the sandbox provider. A nil error means the
// sandbox is gone or going (the provider's own answer that the sandbox does
// not exist is success too; an answer from anything else, such as a wrong
// endpoint, is not). An error whose Retryable method reports false is
// permanent (needs an operator); any other error is worth retrying later.
type Destroyer interface {
	DeleteSandbox(ctx context.Context, id string) error
}

// Repairer completes Redis work that may not have been applied inline.
type Repairer interface {
	// Repair applies each work in its repair form (counters deleted, not
	// lowered) unless its marker shows it was applied already, in one round
	// trip for the whole batch. errs[i] is the outcome of works[i]; nil
	// means the work is complete.
	Repair(ctx context.Context, works []threads.CacheWork) (errs []error)
}

// Resender puts an outbox row back on the queue.
type Resender interface {
	Resend(ctx context.Context, e Entry) error
}

// Job is one delivery of a queued message to the Worker.
type Job struct {
	// ID identifies the delivery; Handle reports failed deliveries by it
	// (the SQS message id).
	ID string
	// OutboxID is the outbox row the message names (its job_id).
	OutboxID string
	// Kind is the kind the message claims; the row's own kind decides.
	Kind string
}

// permanent reports whether err says that retrying cannot help.
func permanent(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && !r.Retryable()
}
