package threads_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// The domain tier: the Deleter over fakes of its ports, no service needed.
// These tests pin the logic between the store's answer and the caller's
// result; the adapters' own tests pin what the real store, cache and queue
// do.

// fakeStore answers every Delete with del or err and records the requests.
type fakeStore struct {
	del  threads.Deletion
	err  error
	reqs []threads.Request
}

func (s *fakeStore) Delete(_ context.Context, req threads.Request) (threads.Deletion, error) {
	s.reqs = append(s.reqs, req)
	return s.del, s.err
}

// fakeCache records the work it is asked to apply and fails with err.
type fakeCache struct {
	mu      sync.Mutex
	applied []threads.CacheWork
	err     error
}

func (c *fakeCache) Apply(_ context.Context, w threads.CacheWork) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applied = append(c.applied, w)
	return c.err
}

// fakeQueue records the teardowns it is handed and fails with err.
type fakeQueue struct {
	mu   sync.Mutex
	sent [][]threads.Teardown
	err  error
}

func (q *fakeQueue) SendTeardowns(_ context.Context, ts []threads.Teardown) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sent = append(q.sent, ts)
	return q.err
}

const (
	idA = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"
	idB = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c20"
	idC = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c30"
)

func TestParseIDs(t *testing.T) {
	hundred := make([]string, threads.MaxBulk+1)
	for i := range hundred {
		hundred[i] = idA[:30] + strings.Repeat("0", 6-len(itoa(i))) + itoa(i)
	}
	tests := []struct {
		name string
		in   []string
		want []string
		err  error
	}{
		{"one", []string{idA}, []string{idA}, nil},
		{"upper case is canonicalised", []string{strings.ToUpper(idA)}, []string{idA}, nil},
		{"repeats in any case go, first order kept", []string{idB, idA, strings.ToUpper(idB), idA}, []string{idB, idA}, nil},
		{"a hundred", hundred[:threads.MaxBulk], hundred[:threads.MaxBulk], nil},
		{"none", nil, nil, threads.ErrBadRequest},
		{"a hundred and one", hundred, nil, threads.ErrBadRequest},
		{"not a UUID", []string{idA, "not-a-uuid"}, nil, threads.ErrInvalidID},
		{"braces", []string{"{" + idA[1:35] + "}"}, nil, threads.ErrInvalidID},
		{"Cyrillic а", []string{strings.Replace(idA, "a", "а", 1)}, nil, threads.ErrInvalidID},
		{"no hyphens", []string{strings.ReplaceAll(idA, "-", "") + "xxxx"}, nil, threads.ErrInvalidID},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := threads.ParseIDs(tc.in)
			if !errors.Is(err, tc.err) || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseIDs = %v, %v; want %v, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestDeletionOutcome(t *testing.T) {
	del := threads.Deletion{
		Forbidden: []string{idB},
		Work:      threads.CacheWork{ID: "w", ThreadIDs: []string{idA, idC}},
	}
	for id, want := range map[string]threads.Outcome{
		idA: threads.OutcomeDeleted, idC: threads.OutcomeDeleted, idB: threads.OutcomeForbidden,
		"7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c99": threads.OutcomeNotFound,
	} {
		if got := del.Outcome(id); got != want {
			t.Errorf("Outcome(%s) = %v, want %v", id, got, want)
		}
	}
}

// The follow-up after a commit: Redis work applied when something was
// deleted, teardowns sent when projects with sandboxes went; a failure of
// either is reported in the result, never as an error (the outbox holds the
// work), and nothing runs when nothing was deleted.
func TestFollowUp(t *testing.T) {
	work := threads.CacheWork{ID: "work-1", ThreadIDs: []string{idA}}
	teardown := threads.Teardown{JobID: "job-1", SandboxID: "sb"}
	boom := errors.New("boom")
	tests := []struct {
		name                  string
		del                   threads.Deletion
		cacheErr, queueErr    error
		wantApplied, wantSent int
	}{
		{"nothing deleted: no follow-up", threads.Deletion{Forbidden: []string{idA}}, nil, nil, 0, 0},
		{"deleted, project kept", threads.Deletion{Work: work}, nil, nil, 1, 0},
		{"deleted, sandbox to tear down", threads.Deletion{Work: work, Teardowns: []threads.Teardown{teardown}}, nil, nil, 1, 1},
		{"cache fails", threads.Deletion{Work: work, Teardowns: []threads.Teardown{teardown}}, boom, nil, 1, 1},
		{"queue fails", threads.Deletion{Work: work, Teardowns: []threads.Teardown{teardown}}, nil, boom, 1, 1},
		{"both fail", threads.Deletion{Work: work, Teardowns: []threads.Teardown{teardown}}, boom, boom, 1, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache, queue := &fakeCache{err: tc.cacheErr}, &fakeQueue{err: tc.queueErr}
			d := &threads.Deleter{Store: &fakeStore{del: tc.del}, Cache: cache, Queue: queue, Log: quiet()}
			res, err := d.Delete(context.Background(), threads.Request{ThreadIDs: []string{idA}})
			if err != nil {
				t.Fatalf("Delete failed although the store committed: %v", err)
			}
			if len(cache.applied) != tc.wantApplied || len(queue.sent) != tc.wantSent {
				t.Fatalf("applied %d, sent %d; want %d, %d", len(cache.applied), len(queue.sent), tc.wantApplied, tc.wantSent)
			}
			if tc.wantApplied == 1 && cache.applied[0].ID != work.ID {
				t.Fatalf("applied %+v, want the store's work", cache.applied[0])
			}
			if tc.wantSent == 1 && !slices.Equal(queue.sent[0], []threads.Teardown{teardown}) {
				t.Fatalf("sent %+v", queue.sent[0])
			}
			if !errors.Is(res.CacheErr, tc.cacheErr) || !errors.Is(res.QueueErr, tc.queueErr) ||
				(tc.cacheErr == nil) != (res.CacheErr == nil) || (tc.queueErr == nil) != (res.QueueErr == nil) {
				t.Fatalf("result errors %v / %v, want %v / %v", res.CacheErr, res.QueueErr, tc.cacheErr, tc.queueErr)
			}
		})
	}
}

// No cache or queue configured: the outbox keeps the work for the sweeper.
func TestFollowUpWithoutCacheOrQueue(t *testing.T) {
	d := &threads.Deleter{Store: &fakeStore{del: threads.Deletion{Work: threads.CacheWork{ID: "w", ThreadIDs: []string{idA}},
		Teardowns: []threads.Teardown{{JobID: "j"}}}}, Log: quiet()}
	if _, err := d.Delete(context.Background(), threads.Request{ThreadIDs: []string{idA}}); err != nil {
		t.Fatal(err)
	}
}

// What reaches the store: canonical ids without repeats, the caller as
// given; a bad request or a store failure never runs the follow-up.
func TestDeleteRequestsAndErrors(t *testing.T) {
	caller := threads.Caller{UserID: "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b", SessionID: "s"}
	tests := []struct {
		name     string
		ids      []string
		storeErr error
		wantErr  error
		wantReq  []string
	}{
		{"canonical and once", []string{strings.ToUpper(idA), idB, idA}, nil, nil, []string{idA, idB}},
		{"invalid id: no store call", []string{"x"}, nil, threads.ErrInvalidID, nil},
		{"too many: no store call", make([]string, 101), nil, threads.ErrBadRequest, nil},
		{"store says the key is bad", []string{idA}, threads.ErrInvalidAPIKey, threads.ErrInvalidAPIKey, []string{idA}},
		{"store says the session ended", []string{idA}, threads.ErrSessionRevoked, threads.ErrSessionRevoked, []string{idA}},
		{"store unavailable", []string{idA}, threads.ErrUnavailable, threads.ErrUnavailable, []string{idA}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store, cache := &fakeStore{err: tc.storeErr, del: threads.Deletion{Work: threads.CacheWork{ID: "w"}}}, &fakeCache{}
			d := &threads.Deleter{Store: store, Cache: cache, Log: quiet()}
			_, err := d.Delete(context.Background(), threads.Request{ThreadIDs: tc.ids, Caller: caller})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantReq == nil {
				if len(store.reqs) != 0 {
					t.Fatal("the store was called for a bad request")
				}
				return
			}
			if len(store.reqs) != 1 || !slices.Equal(store.reqs[0].ThreadIDs, tc.wantReq) || store.reqs[0].Caller != caller {
				t.Fatalf("store got %+v, want ids %v for the caller", store.reqs, tc.wantReq)
			}
			if tc.wantErr != nil && len(cache.applied) != 0 {
				t.Fatal("follow-up ran after a failed transaction")
			}
		})
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
