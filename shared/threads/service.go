package threads

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Result is what a successful Delete reports to the caller (and the logs).
type Result struct {
	Deletion
	// CacheErr and QueueErr record post-commit work that failed; the
	// response is still a success because the work is recorded and retried.
	CacheErr, QueueErr error
}

// Deleter deletes threads: one transaction in the Store, then, concurrently
// and bounded in time, the cache invalidation and the teardown hand-off.
type Deleter struct {
	Store Store
	Cache Cache
	Queue Queue // may be nil when no queue is configured; teardowns then wait for the sweeper
	Log   *slog.Logger

	// FollowUpTimeout bounds the post-commit work (Redis, SQS) so that a
	// slow dependency never holds the response. Zero means 2s.
	FollowUpTimeout time.Duration
	// MinDBTime is how much of the caller's deadline must remain before the
	// transaction is started; with less, Delete answers ErrUnavailable
	// without touching the database. Zero means 250ms.
	MinDBTime time.Duration
}

// Delete deletes the thread named by req. See the package errors for the
// failure cases; a nil error means the thread and its dependents are gone.
func (d *Deleter) Delete(ctx context.Context, req Request) (Result, error) {
	id, err := ParseID(req.ThreadID)
	if err != nil {
		return Result{}, err
	}
	req.ThreadID = id
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d.minDBTime() {
		return Result{}, ErrUnavailable
	}

	// The database phase ends early enough to answer before the caller's
	// deadline: a database that stops answering mid-request (a failover
	// leaves the pooled connection's peer silent) would otherwise be waited
	// for until the function is killed, and the client would get no answer
	// of ours at all.
	dbCtx, cancel := d.dbContext(ctx)
	defer cancel()
	del, err := d.Store.Delete(dbCtx, req)
	if err != nil {
		return Result{}, err
	}
	switch del.Outcome {
	case OutcomeDeleted:
	case OutcomeNotFound:
		return Result{Deletion: del}, ErrNotFound
	case OutcomeForbidden:
		return Result{Deletion: del}, ErrForbidden
	case OutcomeInvalidAPIKey:
		return Result{Deletion: del}, ErrInvalidAPIKey
	default:
		return Result{Deletion: del}, errors.New("threads: store returned no outcome")
	}

	res := Result{Deletion: del}
	res.CacheErr, res.QueueErr = d.followUp(ctx, req.ThreadID, del)
	return res, nil
}

// followUp runs the Redis invalidation and the SQS send concurrently. Neither
// can fail the request: a failed invalidation is recorded as a repair in the
// outbox, a failed send leaves the teardown's outbox row pending for the
// sweeper.
func (d *Deleter) followUp(ctx context.Context, threadID string, del Deletion) (cacheErr, queueErr error) {
	// The work must not be cut short because the client went away, only by
	// our own bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.followUpTimeout(ctx))
	defer cancel()

	inv := InvalidationFor(threadID, del)
	var wg sync.WaitGroup
	if del.Teardown != nil && d.Queue != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			queueErr = d.Queue.SendTeardown(ctx, *del.Teardown)
		}()
	}
	if d.Cache != nil {
		cacheErr = d.Cache.Invalidate(ctx, inv)
	}
	wg.Wait()

	if queueErr != nil {
		d.logger().Warn("teardown not queued; the sweeper will re-send it",
			"job_id", del.Teardown.JobID, "error", queueErr.Error())
	}
	if cacheErr != nil {
		d.logger().Warn("cache invalidation failed; repair recorded for the worker",
			"thread_id", threadID, "account_id", inv.AccountID, "error", cacheErr.Error())
		// The repair is written with a fresh, short deadline: the follow-up
		// budget may be spent by the very timeout that failed.
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer rcancel()
		if err := d.Store.RecordCacheRepair(rctx, inv, cacheErr.Error()); err != nil {
			d.logger().Error("cache repair could not be recorded",
				"thread_id", threadID, "account_id", inv.AccountID,
				"thread_ids", inv.ThreadIDs, "project_deleted", inv.ProjectDeleted,
				"error", err.Error())
		}
	}
	return cacheErr, queueErr
}

// InvalidationFor derives the Redis work owed for a committed deletion.
func InvalidationFor(threadID string, del Deletion) Invalidation {
	return Invalidation{
		Key:            threadID,
		AccountID:      del.AccountID,
		ProjectID:      del.ProjectID,
		ThreadIDs:      del.ThreadIDs,
		ProjectDeleted: del.ProjectDeleted,
	}
}

func (d *Deleter) followUpTimeout(ctx context.Context) time.Duration {
	t := d.FollowUpTimeout
	if t <= 0 {
		t = 2 * time.Second
	}
	// Leave room to answer before the Lambda deadline.
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl) - 100*time.Millisecond; left < t {
			t = max(left, 50*time.Millisecond)
		}
	}
	return t
}

// answerReserve is the part of the caller's deadline that the database
// phase leaves for answering: building the response, logging, returning it
// to the Lambda runtime.
const answerReserve = 200 * time.Millisecond

// dbContext bounds the database phase to the caller's deadline less
// answerReserve.
func (d *Deleter) dbContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, dl.Add(-answerReserve))
}

func (d *Deleter) minDBTime() time.Duration {
	if d.MinDBTime <= 0 {
		return 250 * time.Millisecond
	}
	return d.MinDBTime
}

func (d *Deleter) logger() *slog.Logger {
	if d.Log == nil {
		return slog.Default()
	}
	return d.Log
}
