package cleanup

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/kortix-ai/thread-delete/shared/metrics"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Defaults of the Sweeper. With ResendAfter = 5m a teardown that never
// completes is re-sent after 5m, then 10m, 20m, 40m and hourly after that:
// the 20th re-send happens about 17 hours after the delete, and the row is
// declared dead an hour later.
const (
	// DefaultResendAfter is OUTBOX_RESEND_AFTER's default: longer than a
	// normal teardown takes (seconds), so a healthy row is never re-sent.
	DefaultResendAfter = 5 * time.Minute
	// DefaultMaxBackoff caps the exponential wait between re-sends.
	DefaultMaxBackoff = time.Hour
	// DefaultMaxSends is how many re-sends a row gets before it is marked
	// dead. Every re-send gives the queue its own maxReceiveCount
	// deliveries, so this is generous; a dead row keeps its last_error.
	DefaultMaxSends = 20
	// DefaultBatchSize bounds one claim (one UPDATE ... LIMIT).
	DefaultBatchSize = 100
	// DefaultMaxBatches bounds one sweep, so that a large backlog is worked
	// off over several scheduled runs instead of one overlong invocation.
	DefaultMaxBatches = 10

	// DefaultCacheGrace is how long after a delete its Redis work is left to
	// the inline application before the sweeper completes it: longer than
	// the function's timeout, so a row is normally found applied (marker
	// present) and merely marked done.
	DefaultCacheGrace = time.Minute
	// DefaultCacheMaxBackoff caps the wait between attempts at Redis work
	// while Redis fails: counters stay too high at most this long after it
	// recovers.
	DefaultCacheMaxBackoff = 5 * time.Minute
	// DefaultCacheBatchSize bounds one claim of Redis work: every delete
	// records one row, so batches are larger than for teardowns. One batch
	// is one Redis round trip and two statements.
	DefaultCacheBatchSize = 500

	// DefaultRetention is OUTBOX_RETENTION's default: done rows are kept a
	// week for inspection, then pruned.
	DefaultRetention = 7 * 24 * time.Hour
	// DefaultPruneBatchSize bounds one prune statement, and so how many row
	// locks it holds at once. With DefaultMaxBatches a sweep prunes up to
	// 10,000 rows, far more than a minute's deletes write.
	DefaultPruneBatchSize = 1000
)

// Sweeper re-sends teardowns that stayed pending too long: the send after
// the delete failed (SQS outage), or the message went to the dead-letter
// queue after repeated failures. The Worker is idempotent, so an early or
// duplicate re-send costs a no-op delivery, never a second teardown.
//
// It also completes the Redis work of every delete (see CachePolicy): a row
// whose work was applied inline carries a marker in Redis and is marked
// done; a row without one (Redis was down, the reply was lost, the function
// was killed after the commit) is applied in its repair form, in place, with
// no queue hop.
//
// When a row is due. The delete-thread function inserts a row with
// next_attempt_at = now() and sends the message right after commit, writing
// nothing back. So for a row never re-sent (sends = 0) next_attempt_at is
// the moment of that first send, and the row is due ResendAfter after it.
// Each re-send increments sends and sets next_attempt_at to the time the next
// one is due: now + ResendAfter·2^sends, capped at MaxBackoff. A row
// currently leased by a worker is never due. A due row that has already
// been re-sent MaxSends times is marked dead instead, with last_error saying
// so. A re-send that fails is undone (sends and next_attempt_at restored,
// last_error recorded): the row stays pending and due, and outages of the
// queue do not count towards the cap.
type Sweeper struct {
	Outbox Outbox
	// Queue re-sends teardowns; when nil, due teardowns are left pending.
	Queue Resender
	// Cache completes Redis work; when nil, Redis work is left pending.
	Cache Repairer
	Log   *slog.Logger

	ResendAfter time.Duration // zero: DefaultResendAfter
	MaxBackoff  time.Duration // zero: DefaultMaxBackoff
	MaxSends    int           // zero: DefaultMaxSends
	BatchSize   int           // zero: DefaultBatchSize
	MaxBatches  int           // zero: DefaultMaxBatches
	// Concurrency bounds the sends in flight. Zero means 8.
	Concurrency int

	CacheGrace      time.Duration // zero: DefaultCacheGrace
	CacheMaxBackoff time.Duration // zero: DefaultCacheMaxBackoff
	CacheBatchSize  int           // zero: DefaultCacheBatchSize

	// Retention is how long done rows are kept (OUTBOX_RETENTION); older
	// ones are deleted, PruneBatchSize rows per statement, at most
	// MaxBatches statements per sweep. Zero: DefaultRetention.
	Retention      time.Duration
	PruneBatchSize int // zero: DefaultPruneBatchSize
	// Namespace is the CloudWatch namespace of the sweep's metrics
	// (METRICS_NAMESPACE); empty means metrics.DefaultNamespace.
	Namespace string
}

// SweepReport says what one sweep did.
type SweepReport struct {
	Resent int `json:"resent"`
	Failed int `json:"failed"` // re-sends that failed; those rows stay due
	Dead   int `json:"dead"`   // rows given up on in this sweep
	// CacheDone counts Redis-work rows completed (found applied or
	// repaired); CacheFailed those that failed and stay due.
	CacheDone   int `json:"cache_done"`
	CacheFailed int `json:"cache_failed"`
	// Pruned counts done rows deleted for being older than the retention.
	Pruned int `json:"pruned"`
}

// Policy returns the due rule with defaults applied.
func (s *Sweeper) Policy() DuePolicy {
	p := DuePolicy{ResendAfter: s.ResendAfter, MaxBackoff: s.MaxBackoff, MaxSends: s.MaxSends}
	if p.ResendAfter <= 0 {
		p.ResendAfter = DefaultResendAfter
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultMaxBackoff
	}
	if p.MaxSends <= 0 {
		p.MaxSends = DefaultMaxSends
	}
	return p
}

// Sweep runs one sweep. It returns an error only when the outbox could not
// be read; failed sends are counted in the report and retried next time.
func (s *Sweeper) Sweep(ctx context.Context) (SweepReport, error) {
	var rep SweepReport
	p := s.Policy()
	log := s.logger()

	dead, err := s.Outbox.Bury(ctx, p)
	if err != nil {
		return rep, err
	}
	if dead > 0 {
		log.ErrorContext(ctx, "outbox rows given up on after the maximum number of re-sends", "rows", dead, "max_sends", p.MaxSends)
	}
	rep.Dead = dead

	batch, batches := s.batchSize(), s.maxBatches()
	if s.Queue == nil {
		batches = 0 // no queue configured: teardowns wait for one
	}
	for range batches {
		if nearDeadline(ctx) {
			break
		}
		rows, err := s.Outbox.ClaimDue(ctx, p, batch)
		if err != nil {
			return rep, err
		}
		resent, failed := s.send(ctx, rows)
		rep.Resent += resent
		rep.Failed += failed
		if len(rows) < batch || failed == len(rows) {
			break // backlog worked off, or the queue is down: try next sweep
		}
	}
	if s.Cache != nil {
		if err := s.sweepCache(ctx, &rep); err != nil {
			return rep, err
		}
	}
	// A failed prune leaves the table larger for a while; the backlog is
	// still reported, and the error returned afterwards.
	pruneErr := s.prune(ctx, &rep)
	if pruneErr != nil {
		log.ErrorContext(ctx, "outbox prune failed", "error", pruneErr.Error())
	}
	backlog, err := s.Outbox.Backlog(ctx)
	if err != nil {
		return rep, err
	}
	s.logSweep(ctx, rep, backlog)
	return rep, pruneErr
}

// logSweep writes the one line of a sweep, every sweep: what it did and the
// backlog it left, which is also the sweep's metrics document (package
// metrics). The alarms on dead rows and on the oldest pending teardown read
// the metrics of this line.
func (s *Sweeper) logSweep(ctx context.Context, rep SweepReport, b Backlog) {
	oldestT, oldestRW := metrics.InSeconds(b.OldestTeardown), metrics.InSeconds(b.OldestRedisWork)
	m := metrics.New(s.Namespace).
		Put(metrics.PendingTeardowns, float64(b.PendingTeardowns)).
		Put(metrics.PendingRedisWork, float64(b.PendingRedisWork)).
		Put(metrics.OldestPendingTeardownAge, oldestT).
		Put(metrics.OldestPendingRedisWorkAge, oldestRW).
		Put(metrics.DeadRows, float64(b.Dead)).
		Put(metrics.TeardownsResent, float64(rep.Resent)).
		Put(metrics.RowsMarkedDead, float64(rep.Dead)).
		Put(metrics.RedisWorkCompleted, float64(rep.CacheDone)).
		Put(metrics.RowsPruned, float64(rep.Pruned))
	attrs := []any{"resent", rep.Resent, "failed", rep.Failed, "dead", rep.Dead,
		"cache_done", rep.CacheDone, "cache_failed", rep.CacheFailed, "pruned", rep.Pruned,
		"pending_teardowns", b.PendingTeardowns, "pending_redis_work", b.PendingRedisWork,
		"oldest_pending_teardown_s", oldestT, "oldest_pending_redis_work_s", oldestRW,
		"dead_rows", b.Dead}
	s.logger().InfoContext(ctx, "outbox sweep", append(attrs, m.Attrs()...)...)
}

// prune deletes done rows older than the retention, batch by batch, until a
// batch comes back short or the sweep's batch budget is spent; a larger
// backlog is worked off over the next sweeps.
func (s *Sweeper) prune(ctx context.Context, rep *SweepReport) error {
	retention, limit := s.Retention, s.PruneBatchSize
	if retention <= 0 {
		retention = DefaultRetention
	}
	if limit <= 0 {
		limit = DefaultPruneBatchSize
	}
	for range s.maxBatches() {
		if nearDeadline(ctx) {
			break
		}
		n, err := s.Outbox.Prune(ctx, retention, limit)
		rep.Pruned += n
		if err != nil {
			return err
		}
		if n < limit {
			break
		}
	}
	return nil
}

// CachePolicy returns the Redis-work due rule with defaults applied.
func (s *Sweeper) CachePolicy() CachePolicy {
	p := CachePolicy{Grace: s.CacheGrace, MaxBackoff: s.CacheMaxBackoff}
	if p.Grace <= 0 {
		p.Grace = DefaultCacheGrace
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = DefaultCacheMaxBackoff
	}
	return p
}

// sweepCache completes due Redis work, batch by batch: one claim, one Redis
// round trip, one statement to record the results.
func (s *Sweeper) sweepCache(ctx context.Context, rep *SweepReport) error {
	p, limit := s.CachePolicy(), s.CacheBatchSize
	if limit <= 0 {
		limit = DefaultCacheBatchSize
	}
	for range s.maxBatches() {
		if nearDeadline(ctx) {
			break
		}
		rows, err := s.Outbox.ClaimCacheWork(ctx, p, limit)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			break
		}
		var (
			works  []threads.CacheWork
			done   []string
			failed []Failure
		)
		for _, e := range rows {
			w, err := e.CacheWork()
			if err != nil {
				s.logger().ErrorContext(ctx, "outbox row unusable", "job_id", e.ID, "kind", e.Kind, "error", err.Error())
				failed = append(failed, Failure{ID: e.ID, Cause: err.Error(), Dead: true})
				continue
			}
			works = append(works, w)
		}
		if len(works) > 0 {
			for i, err := range s.Cache.Repair(ctx, works) {
				if err == nil {
					done = append(done, works[i].ID)
					continue
				}
				failed = append(failed, Failure{ID: works[i].ID, Cause: "redis: " + err.Error()})
			}
		}
		// Recorded even when the invocation's deadline is what failed the
		// repairs.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = s.Outbox.FinishCacheWork(fctx, done, failed)
		cancel()
		if err != nil {
			return err
		}
		rep.CacheDone += len(done)
		rep.CacheFailed += len(failed)
		if len(failed) > 0 {
			s.logger().WarnContext(ctx, "redis work not completed; it stays due", "rows", len(failed), "first_error", failed[0].Cause)
		}
		if len(rows) < limit || len(done) == 0 {
			break // worked off, or Redis is down: try next sweep
		}
	}
	return nil
}

// send re-sends rows concurrently and undoes the claim of each that fails.
func (s *Sweeper) send(ctx context.Context, rows []Entry) (resent, failed int) {
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, s.concurrency())
	)
	for _, e := range rows {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			log := s.logger().With("job_id", e.ID, "kind", e.Kind, "sends", e.Sends+1)
			err := s.Queue.Resend(ctx, e)
			mu.Lock()
			if err == nil {
				resent++
			} else {
				failed++
			}
			mu.Unlock()
			if err == nil {
				log.InfoContext(ctx, "outbox row re-sent")
				return
			}
			log.WarnContext(ctx, "outbox re-send failed; the row stays due", "error", err.Error())
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if uerr := s.Outbox.ResendFailed(uctx, e, "re-send failed: "+err.Error()); uerr != nil {
				// The row keeps its claim: it is re-sent after the backoff.
				log.ErrorContext(ctx, "failed re-send not recorded", "error", uerr.Error())
			}
		}()
	}
	wg.Wait()
	return resent, failed
}

func (s *Sweeper) batchSize() int {
	if s.BatchSize <= 0 {
		return DefaultBatchSize
	}
	return s.BatchSize
}

func (s *Sweeper) maxBatches() int {
	if s.MaxBatches <= 0 {
		return DefaultMaxBatches
	}
	return s.MaxBatches
}

func (s *Sweeper) concurrency() int {
	if s.Concurrency <= 0 {
		return 8
	}
	return s.Concurrency
}

func (s *Sweeper) logger() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

// nearDeadline reports that less than the sweep's margin (2 s) is left: a
// batch claimed now and cut short by the deadline would wait a whole
// backoff period for nothing, so the next sweep takes it.
func nearDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < 2*time.Second
}
