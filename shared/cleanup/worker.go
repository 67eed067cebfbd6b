package cleanup

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/kortix-ai/thread-delete/shared/metrics"
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
	// Namespace is the CloudWatch namespace of the batch's metrics
	// (METRICS_NAMESPACE); empty means metrics.DefaultNamespace.
	Namespace string
}

// Results of one queued job: the Result dimension of the worker's metrics.
const (
	// ResultDone: the work is complete (sandbox gone, or Redis repaired).
	ResultDone = "done"
	// ResultDuplicate: the row was done already; the delivery is
	// acknowledged.
	ResultDuplicate = "duplicate"
	// ResultMissing: no outbox row (pruned after completion, or never
	// written); the message is dropped.
	ResultMissing = "missing"
	// ResultBusy: another delivery holds the row's lease; delivered again
	// later.
	ResultBusy = "busy"
	// ResultFailed: the attempt failed; delivered again.
	ResultFailed = "failed"
	// ResultRefused: the sandbox provider refused in a way retrying cannot
	// fix (a misconfiguration); delivered again until the dead-letter queue.
	ResultRefused = "refused"
	// ResultDead: the row is unusable and was marked dead; acknowledged.
	ResultDead = "dead"
	// ResultInvalid: the message names no valid outbox id.
	ResultInvalid = "invalid"
)

// jobResult is what became of one job, for the batch's metrics.
type jobResult struct {
	kind, result string
	attempt      int           // the attempt this delivery made; 0: it made none
	latency      time.Duration // a teardown done: from the delete's commit; 0 otherwise
}

// Handle processes a batch and returns the IDs of the jobs that failed and
// must be delivered again. One item's failure never affects the others.
func (w *Worker) Handle(ctx context.Context, jobs []Job) (failedIDs []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, w.concurrency())
	failed := make([]bool, len(jobs)) // each goroutine writes its own index
	results := make([]jobResult, len(jobs))
	for i, job := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			r := &results[i]
			r.kind = kindLabel(job.Kind)
			defer func() {
				// A bug in one item must not take the batch down with it.
				if p := recover(); p != nil {
					w.logger().ErrorContext(ctx, "cleanup item panicked", "message_id", job.ID, "job_id", job.OutboxID, "panic", p)
					failed[i] = true
					r.result = ResultFailed
				}
			}()
			if err := w.handle(ctx, job, r); err != nil {
				failed[i] = true
				if r.result == "" {
					r.result = ResultFailed
				}
			}
		}()
	}
	wg.Wait()
	w.report(ctx, results)
	for i, f := range failed {
		if f {
			failedIDs = append(failedIDs, jobs[i].ID)
		}
	}
	return failedIDs
}

// errBusy: another delivery holds the row; the queue retries this one later.
var errBusy = errors.New("outbox row is being worked on by another consumer")

// handle processes one job and records its result in r; a non-nil error
// means "deliver it again".
func (w *Worker) handle(ctx context.Context, job Job, r *jobResult) error {
	log := w.logger().With("message_id", job.ID, "job_id", job.OutboxID)
	if _, err := threads.ParseID(job.OutboxID); err != nil {
		log.ErrorContext(ctx, "job names no valid outbox id")
		r.result = ResultInvalid
		return err
	}
	e, claim, err := w.Outbox.Claim(ctx, job.OutboxID, w.lease())
	if err != nil {
		log.ErrorContext(ctx, "outbox claim failed", "error", err.Error())
		return err
	}
	if claim != Missing {
		r.kind = kindLabel(e.Kind) // the row's kind, not what the message claims
	}
	switch claim {
	case AlreadyDone:
		log.InfoContext(ctx, "outbox row already done; duplicate delivery acknowledged")
		r.result = ResultDuplicate
		return nil
	case Missing:
		// Nothing can ever be done for it (completed rows may have been
		// pruned): retrying would only delay the dead-letter queue.
		log.WarnContext(ctx, "no outbox row for this job; message dropped")
		r.result = ResultMissing
		return nil
	case Busy:
		log.InfoContext(ctx, "outbox row leased by another delivery; retrying later")
		r.result = ResultBusy
		return errBusy
	}
	log = log.With("kind", e.Kind, "attempt", e.Attempts+1)
	r.attempt = e.Attempts + 1

	switch e.Kind {
	case KindTeardown:
		return w.teardown(ctx, log, e, r)
	case KindCacheRepair, KindRedisWork:
		return w.repair(ctx, log, e, r)
	default:
		cause := "unknown outbox kind " + e.Kind
		log.ErrorContext(ctx, cause)
		return w.bury(ctx, log, e.Lease(), cause, r)
	}
}

// bury marks the row dead (retrying cannot help) and acknowledges the job.
func (w *Worker) bury(ctx context.Context, log *slog.Logger, l Lease, cause string, r *jobResult) error {
	err := w.fail(ctx, log, l, cause, true, nil)
	if err == nil {
		r.result = ResultDead
	}
	return err
}

func (w *Worker) teardown(ctx context.Context, log *slog.Logger, e Entry, r *jobResult) error {
	t, err := e.Teardown()
	if err != nil {
		// A corrupt payload will not heal: mark it dead and acknowledge.
		log.ErrorContext(ctx, "outbox row unusable", "error", err.Error())
		return w.bury(ctx, log, e.Lease(), err.Error(), r)
	}
	log = log.With("sandbox_id", t.SandboxID, "project_id", t.ProjectID)
	if err := w.Destroyer.DeleteSandbox(ctx, t.SandboxID); err != nil {
		perm := permanent(err)
		if perm {
			log.ErrorContext(ctx, "sandbox teardown refused; will reach the dead-letter queue unless fixed", "error", err.Error())
			r.result = ResultRefused
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
	r.result, r.latency = ResultDone, time.Since(e.CreatedAt)
	return nil
}

func (w *Worker) repair(ctx context.Context, log *slog.Logger, e Entry, r *jobResult) error {
	work, err := e.CacheWork()
	if err != nil {
		log.ErrorContext(ctx, "outbox row unusable", "error", err.Error())
		return w.bury(ctx, log, e.Lease(), err.Error(), r)
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
	r.result = ResultDone
	return nil
}

// kindLabel bounds the Kind dimension to the known kinds: a message may
// claim anything.
func kindLabel(kind string) string {
	switch kind {
	case KindTeardown, KindRedisWork, KindCacheRepair:
		return kind
	}
	return "unknown"
}

// report writes the batch's metrics: one line per kind and result present
// in the batch (one line for a batch that went one way), with the number of
// jobs, the attempt number of each claimed job and, for teardowns done, the
// seconds from the delete's commit to the sandbox being gone.
func (w *Worker) report(ctx context.Context, results []jobResult) {
	type group struct{ kind, result string }
	var order []group
	members := map[group][]jobResult{}
	for _, r := range results {
		g := group{r.kind, r.result}
		if _, ok := members[g]; !ok {
			order = append(order, g)
		}
		members[g] = append(members[g], r)
	}
	for _, g := range order {
		rs := members[g]
		m := metrics.New(w.Namespace).
			Dimension(metrics.DimKind, g.kind).
			Dimension(metrics.DimResult, g.result).
			Put(metrics.Jobs, float64(len(rs)))
		for _, r := range rs {
			if r.attempt > 0 {
				m.Put(metrics.Attempts, float64(r.attempt))
			}
			if r.latency > 0 {
				m.Put(metrics.TeardownLatency, metrics.InSeconds(r.latency))
			}
		}
		attrs := append([]any{"kind", g.kind, "result", g.result, "jobs", len(rs)}, m.Attrs()...)
		w.logger().InfoContext(ctx, "cleanup jobs", attrs...)
	}
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
