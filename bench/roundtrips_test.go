package bench

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// roundTripSamples is how many requests of each case are counted; every
// one must show the same counts.
const roundTripSamples = 20

// benchRoundTrips counts, at the proxies, the round trips each kind of
// request makes to PostgreSQL, Redis and SQS — ours and the original's —
// and shows that our Redis and SQS follow-ups run concurrently.
func benchRoundTrips(b *testing.B) {
	e := newEnv(b)
	printMachine(e)
	ours, orig := e.deleter(viaProxy), e.original(viaProxy)
	stranger := e.PersonalAccount()

	// Opening connections (PostgreSQL start-up, Redis HELLO and SELECT, an
	// HTTP keep-alive connection to SQS) is paid once per Lambda
	// environment, not per request: warm both up first.
	for _, f := range e.seedN(2, lastThread) {
		e.remove(ours, f.owner, f.threads[0])
	}
	for _, f := range e.seedN(2, lastThread) {
		e.replay(orig, f.owner, f.threads[0])
	}

	cases := []struct {
		impl, name string
		shape      shape
		// run performs one request on a fresh fixture.
		run func(f fixture) error
	}{
		{"ours", "thread not found (404)", shape{threads: 1}, func(f fixture) error {
			return attemptExpecting(ours, f.owner, testenv.NewUUID(), threads.OutcomeNotFound)
		}},
		{"ours", "caller may not write (403)", typical, func(f fixture) error {
			return attemptExpecting(ours, stranger, f.threads[0], threads.OutcomeForbidden)
		}},
		{"ours", "delete 1 of 2 threads", typical, func(f fixture) error {
			return attempt(ours, f.owner, f.threads[0])
		}},
		{"ours", "last thread, project without sandbox", shape{threads: 1, messages: 20, runs: 2, docs: 2}, func(f fixture) error {
			return attempt(ours, f.owner, f.threads[0])
		}},
		{"ours", "last thread, project with sandbox", lastThread, func(f fixture) error {
			return attempt(ours, f.owner, f.threads[0])
		}},
		{"original", "delete 1 of 2 threads", typical, func(f fixture) error {
			_, err := orig.delete(context.Background(), f.threads[0], f.owner)
			return err
		}},
		{"original", "last thread, project with sandbox", lastThread, func(f fixture) error {
			_, err := orig.delete(context.Background(), f.threads[0], f.owner)
			return err
		}},
	}

	t := newTable(fmt.Sprintf("Round trips per request, counted at the proxies (%d requests each)", roundTripSamples),
		"implementation", "request", "PostgreSQL", "Redis", "SQS", "total")
	for _, c := range cases {
		fixtures := e.seedN(roundTripSamples, c.shape)
		var lo, hi trips
		for i, f := range fixtures {
			before := e.trips()
			if err := c.run(f); err != nil {
				b.Fatalf("%s, %s: %v", c.impl, c.name, err)
			}
			n := e.trips().since(before)
			if i == 0 {
				lo, hi = n, n
			}
			lo = trips{min(lo.pg, n.pg), min(lo.redis, n.redis), min(lo.sqs, n.sqs)}
			hi = trips{max(hi.pg, n.pg), max(hi.redis, n.redis), max(hi.sqs, n.sqs)}
		}
		t.add(c.impl, c.name, span(lo.pg, hi.pg), span(lo.redis, hi.redis), span(lo.sqs, hi.sqs),
			span(lo.pg+lo.redis+lo.sqs, hi.pg+hi.redis+hi.sqs))
		if c.impl == "ours" {
			ok := hi.pg == 1 && hi.redis <= 1 && hi.sqs <= 1 && (c.shape.sandbox || hi.sqs == 0)
			if !ok {
				t.note("Goal NOT met for %q: want PostgreSQL 1, Redis ≤ 1, SQS ≤ 1 (only when a sandbox goes).", c.name)
			}
		}
	}

	// Concurrency: with 100 ms added to every Redis and SQS round trip (and
	// none to PostgreSQL), a delete that queues a teardown takes about
	// 100 ms more than without if the two follow-ups overlap, 200 ms more
	// if they ran one after the other.
	const slow = 100 * time.Millisecond
	var base, slowed []time.Duration
	for _, f := range e.seedN(6, lastThread) {
		if len(base) < 3 {
			took, _ := e.remove(ours, f.owner, f.threads[0])
			base = append(base, took)
			continue
		}
		e.redisProxy.SetDelay(slow)
		e.sqsProxy.SetDelay(slow)
		took, _ := e.remove(ours, f.owner, f.threads[0])
		e.setDelay(0)
		slowed = append(slowed, took)
	}
	extra := median(slowed) - median(base)
	concurrent := extra < slow*3/2
	t.note("Goal: PostgreSQL 1, Redis 1, SQS at most 1 (only when a sandbox goes): see the rows above.")
	t.note("Redis ‖ SQS: with %s added to each Redis and SQS round trip, a delete that queues a teardown took %s longer (median of 3): the follow-ups run concurrently: %s (one after the other would add ≥ %s).",
		slow, ms(extra), verdict(concurrent), 2*slow)
	t.print()
}

// attempt deletes thread as caller through d with the Lambda's budget,
// and fails unless the thread was deleted and the follow-ups succeeded.
func attempt(d *threads.Deleter, caller, thread string) error {
	return attemptExpecting(d, caller, thread, threads.OutcomeDeleted)
}

// attemptExpecting is attempt for a delete whose outcome for thread must be
// want (not found, forbidden, deleted).
func attemptExpecting(d *threads.Deleter, caller, thread string, want threads.Outcome) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := d.Delete(ctx, threads.Request{ThreadIDs: []string{thread}, Caller: threads.Caller{UserID: caller}})
	if got := res.Outcome(thread); err == nil && got != want {
		err = fmt.Errorf("thread %s: %s, want %s", thread, got, want)
	}
	return errors.Join(err, res.CacheErr, res.QueueErr)
}

// span formats a count that should not vary: "1", or "1–2" if it did.
func span(lo, hi int64) string {
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}
