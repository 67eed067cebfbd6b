package threads

import (
	"context"
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
// and bounded in time, the Redis work and the teardown hand-off.
type Deleter struct {
	Store Store
	Cache Cache // may be nil: the sweeper then completes every delete's Redis work
	Queue Queue // may be nil: teardowns then wait for the sweeper
	Log   *slog.Logger

	// FollowUpTimeout bounds the post-commit work (Redis, SQS) so that a
	// slow dependency never holds the response. Zero means 2s.
	FollowUpTimeout time.Duration
	// MinDBTime is how much of the caller's deadline must remain before the
	// transaction is started; with less, Delete answers ErrUnavailable
	// without touching the database. Zero means 250ms.
	MinDBTime time.Duration
}

// Delete deletes the threads named by req: the ids are validated
// (ParseIDs) before any I/O, the store decides each one inside one
// transaction, and the follow-up of whatever was deleted runs after the
// commit. A nil error means the store committed; Result.Outcome tells what
// became of each id.
func (d *Deleter) Delete(ctx context.Context, req Request) (Result, error) {
	ids, err := ParseIDs(req.ThreadIDs)
	if err != nil {
		return Result{}, err
	}
	req.ThreadIDs = ids
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
	res := Result{Deletion: del}
	if del.Work.ID != "" || len(del.Teardowns) > 0 {
		res.CacheErr, res.QueueErr = d.followUp(ctx, del)
	}
	return res, nil
}

// followUp applies the Redis work and sends the teardowns, concurrently.
// Neither can fail the request, and neither writes anything back: both are
// recorded in the outbox already. Redis work not applied here is completed
// by the sweeper; a teardown not sent stays pending and the sweeper re-sends
// it.
func (d *Deleter) followUp(ctx context.Context, del Deletion) (cacheErr, queueErr error) {
	// The work must not be cut short because the client went away, only by
	// our own bound.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.followUpTimeout(ctx))
	defer cancel()

	var wg sync.WaitGroup
	if len(del.Teardowns) > 0 && d.Queue != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			queueErr = d.Queue.SendTeardowns(ctx, del.Teardowns)
		}()
	}
	if d.Cache != nil && del.Work.ID != "" {
		cacheErr = d.Cache.Apply(ctx, del.Work)
	}
	wg.Wait()

	if queueErr != nil {
		d.logger().WarnContext(ctx, "teardowns not queued; the sweeper will re-send them",
			"teardowns", len(del.Teardowns), "error", queueErr.Error())
	}
	if cacheErr != nil {
		d.logger().WarnContext(ctx, "cache work not applied inline; the sweeper will complete it",
			"job_id", del.Work.ID, "error", cacheErr.Error())
	}
	return cacheErr, queueErr
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
