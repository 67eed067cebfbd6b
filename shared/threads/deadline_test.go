package threads_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// deadlineStore records the deadline it is given and answers as a
// database whose connection went silent would once that deadline passed.
// It answers at once: the deadline is what the test checks, and waiting
// for it would only make the domain tier slow.
type deadlineStore struct{ deadline time.Time }

func (s *deadlineStore) Delete(ctx context.Context, _ threads.Request) (threads.Deletion, error) {
	s.deadline, _ = ctx.Deadline()
	return threads.Deletion{}, errors.Join(threads.ErrUnavailable, context.DeadlineExceeded)
}

// The store's deadline is compared with the caller's, not the clock with
// either: the gap is computed, so the check holds however slowly the test
// runs. MinDBTime is set low so that a slow start cannot make Delete refuse
// before it reaches the store.
func TestDatabasePhaseLeavesTimeToAnswer(t *testing.T) {
	const minReserve = 100 * time.Millisecond // building and returning the answer
	for _, budget := range []time.Duration{400 * time.Millisecond, time.Second} {
		t.Run(budget.String(), func(t *testing.T) {
			store := &deadlineStore{}
			d := &threads.Deleter{Store: store, MinDBTime: time.Millisecond}
			ctx, cancel := context.WithTimeout(context.Background(), budget)
			defer cancel()
			callerDeadline, _ := ctx.Deadline()
			_, err := d.Delete(ctx, threads.Request{ThreadIDs: []string{"7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"}, Caller: threads.Caller{UserID: "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"}})
			if !errors.Is(err, threads.ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if store.deadline.IsZero() {
				t.Fatal("the store was given no deadline: a silent database would hold the request until the function is killed")
			}
			if left := callerDeadline.Sub(store.deadline); left < minReserve {
				t.Fatalf("the store's deadline leaves %v before the caller's, want at least %v to answer", left, minReserve)
			}
		})
	}
}
