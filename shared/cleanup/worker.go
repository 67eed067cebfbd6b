package cleanup

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Worker completes queued outbox work. The queue delivers at least once, so
// Handle is idempotent: a row already done is acknowledged without touching
// anything, and a row leased by a concurrent delivery is left to it.
type Worker struct {
	Outbox    Outbox
	Destroyer Destroyer
	// Cache completes Redis work delivered by the queue (legacy
	// cache_repair messages). When nil, such rows fail and stay pending.
	Cache Repairer
	Log   *slog.Logger

	// Lease is how long a claimed row stays reserved for this worker. It
	// must exceed the time one item can take (the Daytona call's timeout
	// plus the database writes), and stay below the queue's visibility
	// timeout so that a redelivery after a crash finds the lease expired.
	// Zero means 2 minutes.
	Lease time.Duration
	// Concurrency bounds how many items of a batch run at once; each holds
	// a database connection. Zero means 4.
	Concurrency int
}

// Handle processes a batch and returns the IDs of the jobs that failed and
// must be delivered again. One item's failure never affects the others.
func (w *Worker) Handle(ctx context.Context, jobs []Job) (failedIDs []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, w.concurrency())
	failed := make([]bool, len(jobs)) // each goroutine writes its own index
	for i, job := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			defer func() {
				// A bug in one item must not take the batch down with it.
				if p := recover(); p != nil {
					w.logger().ErrorContext(ctx, "cleanup item panicked", "message_id", job.ID, "job_id", job.OutboxID, "panic", p)
					failed[i] = true
				}
			}()
			if err := w.handle(ctx, job); err != nil {
				failed[i] = true
			}
		}()
	}
	wg.Wait()
	for i, f := range failed {
		if f {
			failedIDs = append(failedIDs, jobs[i].ID)
		}
	}
	return failedIDs
}

// errBusy: another delivery holds the row; the queue retries this one later.
var errBusy = errors.New("outbox row is being worked on by another consumer")

// handle processes one job; a non-nil error means "deliver it again".
func (w *Worker) handle(ctx context.Context, job Job) error {
	log := w.logger().With("message_id", job.ID, "job_id", job.OutboxID)
	if _, err := threads.ParseID(job.OutboxID); err != nil {
		log.ErrorContext(ctx, "job names no valid outbox id")
		return err
	}
	e, claim, err := w.Outbox.Claim(ctx, job.OutboxID, w.lease())
	if err != nil {
		log.ErrorContext(ctx, "outbox claim failed", "error", err.Error())
		return err
	}
	switch claim {
	case AlreadyDone:
		log.InfoContext(ctx, "outbox row already done; duplicate delivery acknowledged")
		return nil
	case Missing:
		// Nothing can ever be done for it (completed rows may have been
		// pruned): retrying would only delay the dead-letter queue.
		log.WarnContext(ctx, "no outbox row for this job; message dropped")
		return nil
	case Busy:
		log.InfoContext(ctx, "outbox row leased by another delivery; retrying later")
		return errBusy
	}
	log = log.With("kind", e.Kind, "attempt", e.Attempts+1)

	switch e.Kind {
	case KindTeardown:
		return w.teardown(ctx, log, e)
	case KindCacheRepair, KindRedisWork:
		return w.repair(ctx, log, e)
	default:
		cause := "unknown outbox kind " + e.Kind
		log.ErrorContext(ctx, cause)
		return w.fail(ctx, log, e.Lease(), cause, true, nil)
	}
}

func (w *Worker) teardown(ctx context.Context, log *slog.Logger, e Entry) error {
	t, err := e.Teardown()
	if err != nil {
		// A corrupt payload will not heal: mark it dead and acknowledge.
		log.ErrorContext(ctx, "outbox row unusable", "error", err.Error())
		return w.fail(ctx, log, e.Lease(), err.Error(), true, nil)
	}
	log = log.With("sandbox_id", t.SandboxID, "project_id", t.ProjectID)
	if err := w.Destroyer.DeleteSandbox(ctx, t.SandboxID); err != nil {
		perm := permanent(err)
		if perm {
			log.ErrorContext(ctx, "sandbox teardown refused; will reach the dead-letter queue unless fixed", "error", err.Error())
		} else {
			log.WarnContext(ctx, "sandbox teardown failed; will be retried", "error", err.Error())
		}
		return w.fail(ctx, log, e.Lease(), err.Error(), false, err)
	}
	if err := w.Outbox.CompleteTeardown(ctx, e.Lease(), t); err != nil {
		// The sandbox is gone but the record says otherwise: the retry (or
		// the consumer that took the row over) will get Daytona's not-found
		// and complete the row then.
		w.completionFailed(ctx, log, "sandbox deleted but completion not recorded", err)
		return err
	}
	log.InfoContext(ctx, "sandbox torn down")
	return nil
}

func (w *Worker) repair(ctx context.Context, log *slog.Logger, e Entry) error {
	work, err := e.CacheWork()
	if err != nil {
		log.ErrorContext(ctx, "outbox row unusable", "error", err.Error())
		return w.fail(ctx, log, e.Lease(), err.Error(), true, nil)
	}
	if w.Cache == nil {
		return w.fail(ctx, log, e.Lease(), "no cache configured", false, errors.New("cleanup: no cache configured"))
	}
	if err := w.Cache.Repair(ctx, []threads.CacheWork{work})[0]; err != nil {
		log.WarnContext(ctx, "cache repair failed; will be retried", "error", err.Error())
		return w.fail(ctx, log, e.Lease(), err.Error(), false, err)
	}
	if err := w.Outbox.Complete(ctx, e.Lease()); err != nil {
		w.completionFailed(ctx, log, "cache repaired but completion not recorded", err)
		return err
	}
	log.InfoContext(ctx, "cache repaired")
	return nil
}

// completionFailed logs why work that was done is not recorded as done. A
// lost lease is not this worker's failure: its lease ran out and another
// consumer took the row over, so the row is that consumer's to complete,
// and this delivery is reported failed rather than counted as done (a
// redelivery finds the row done, or busy).
func (w *Worker) completionFailed(ctx context.Context, log *slog.Logger, msg string, err error) {
	if errors.Is(err, ErrLeaseLost) {
		log.WarnContext(ctx, msg+": the lease ran out and another consumer holds the row; left to it", "error", err.Error())
		return
	}
	log.ErrorContext(ctx, msg, "error", err.Error())
}

// fail records a failed attempt and returns what Handle should report: the
// cause (deliver again) or, for a row marked dead, nil (acknowledge: no
// retry can help, and the row says why). When the lease was lost nothing is
// recorded: the row belongs to the consumer that took it over.
func (w *Worker) fail(ctx context.Context, log *slog.Logger, l Lease, cause string, dead bool, report error) error {
	// Record even when the invocation's deadline is what failed the call.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := w.Outbox.Fail(rctx, l, cause, dead); err != nil {
		if errors.Is(err, ErrLeaseLost) {
			log.WarnContext(ctx, "failure not recorded: the lease ran out and another consumer holds the row", "error", err.Error())
		} else {
			log.ErrorContext(ctx, "failure not recorded", "error", err.Error())
		}
		if report == nil {
			report = err
		}
	}
	return report
}

func (w *Worker) lease() time.Duration {
	if w.Lease <= 0 {
		return 2 * time.Minute
	}
	return w.Lease
}

func (w *Worker) concurrency() int {
	if w.Concurrency <= 0 {
		return 4
	}
	return w.Concurrency
}

func (w *Worker) logger() *slog.Logger {
	if w.Log == nil {
		return slog.Default()
	}
	return w.Log
}
