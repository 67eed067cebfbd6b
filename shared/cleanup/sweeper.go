package cleanup

import (
	"context"
	"log/slog"
	"sync"
	"time"
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
)

// Sweeper re-sends outbox rows that stayed pending too long: the send after
// the delete failed (SQS outage), or the message went to the dead-letter
// queue after repeated failures. The Worker is idempotent, so an early or
// duplicate re-send costs a no-op delivery, never a second teardown.
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
	Queue  Resender
	Log    *slog.Logger

	ResendAfter time.Duration // zero: DefaultResendAfter
	MaxBackoff  time.Duration // zero: DefaultMaxBackoff
	MaxSends    int           // zero: DefaultMaxSends
	BatchSize   int           // zero: DefaultBatchSize
	MaxBatches  int           // zero: DefaultMaxBatches
	// Concurrency bounds the sends in flight. Zero means 8.
	Concurrency int
}

// SweepReport says what one sweep did.
type SweepReport struct {
	Resent int `json:"resent"`
	Failed int `json:"failed"` // re-sends that failed; those rows stay due
	Dead   int `json:"dead"`   // rows given up on in this sweep
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
	for range batches {
		// Keep a margin: a claimed row whose send is cut short by the
		// deadline would wait a whole backoff period for nothing.
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < 2*time.Second {
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
	if rep.Resent > 0 || rep.Failed > 0 {
		log.InfoContext(ctx, "outbox sweep", "resent", rep.Resent, "failed", rep.Failed, "dead", rep.Dead)
	}
	return rep, nil
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
