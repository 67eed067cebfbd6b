// Package threads is the domain of the service: deleting conversation
// threads together with everything that hangs off them, and the follow-up
// work (cache invalidation, stopping agents, sandbox teardown) that must
// happen once the delete has committed.
//
// One core serves both endpoints: a Request names a set of threads (one for
// DELETE /threads/{id}, up to MaxBulk for POST /threads/bulk-delete), each
// decided as if it were deleted alone, all deletable ones removed in one
// transaction.
//
// The package knows nothing of AWS, PostgreSQL or Redis. Adapters for those
// live in sibling packages and are wired together in package app.
package threads

import (
	"context"
	"errors"
	"strings"
	"time"
)

// MaxBulk is the most threads one request may name.
const MaxBulk = 100

// Errors a Deleter returns. The HTTP adapter maps each to one status code;
// anything else is an internal error.
var (
	// ErrInvalidID: a thread id is not a UUID. Detected before any I/O.
	ErrInvalidID = errors.New("threads: invalid thread id")
	// ErrBadRequest: a request names no thread, or more than MaxBulk.
	ErrBadRequest = errors.New("threads: a request names 1 to 100 threads")
	// ErrInvalidAPIKey: an X-API-Key credential did not match an active key.
	ErrInvalidAPIKey = errors.New("threads: invalid api key")
	// ErrSessionRevoked: sessions are required and the token's session no
	// longer exists (the user signed out) or has passed its not_after.
	ErrSessionRevoked = errors.New("threads: session no longer valid")
	// ErrUnavailable wraps failures to reach the database in time; callers
	// may retry. Nothing was changed, except in the one case no server can
	// prevent: a commit whose reply was lost.
	ErrUnavailable = errors.New("threads: database unavailable")
)

// Caller is the authenticated principal asking for a delete. Exactly one of
// UserID and APIKey is set.
type Caller struct {
	// UserID is the `sub` of a verified JWT (a lower-case UUID).
	UserID string
	// SessionID is the JWT's session_id (a lower-case UUID): set only when
	// sessions are required; the store then requires the session to exist
	// in auth.sessions.
	SessionID string
	// APIKey is set when the request carried X-API-Key. The key is resolved
	// to its account inside the delete transaction itself, so that checking
	// it costs no extra round trip; it acts for that account only.
	APIKey *APIKey
}

// APIKey is a parsed "pk_...:sk_..." credential. SecretHash is the hex
// HMAC-SHA256 of the secret as stored in api_keys.secret_key_hash; the plain
// secret never leaves the authentication layer.
type APIKey struct {
	PublicKey  string
	SecretHash string
}

// Request asks for a set of threads to be deleted.
type Request struct {
	// ThreadIDs are canonical (lower-case) UUIDs without repeats; see
	// ParseIDs.
	ThreadIDs []string
	Caller    Caller
}

// Outcome is what the store decided for one requested thread.
type Outcome int

const (
	// OutcomeNotFound: no such thread (or it was deleted already).
	OutcomeNotFound Outcome = iota
	// OutcomeDeleted: the thread and its sub-agent threads are gone.
	OutcomeDeleted
	// OutcomeForbidden: the thread, or a thread of its sub-agent set,
	// belongs to an account the caller may not write; nothing of it was
	// deleted.
	OutcomeForbidden
)

func (o Outcome) String() string {
	switch o {
	case OutcomeDeleted:
		return "deleted"
	case OutcomeForbidden:
		return "forbidden"
	}
	return "not_found"
}

// Deletion reports what one committed delete transaction did.
type Deletion struct {
	// Forbidden lists the requested ids that were refused.
	Forbidden []string
	// Work holds every thread and project removed and the Redis follow-up
	// they need; Work.ID is empty when nothing was deleted.
	Work CacheWork
	// Messages and Runs count the rows removed with the threads.
	Messages, Runs int64
	// RoundTrips is how many times the store sent the transaction: 1, or 2
	// when it was re-sent after a deadlock or a dead idle connection.
	RoundTrips int
	// Teardowns holds one entry per deleted project that owned a sandbox;
	// their outbox rows were written in the same transaction.
	Teardowns []Teardown
}

// Outcome returns the decision for requested id (canonical form).
func (d Deletion) Outcome(id string) Outcome {
	for _, t := range d.Work.ThreadIDs {
		if t == id {
			return OutcomeDeleted
		}
	}
	for _, f := range d.Forbidden {
		if f == id {
			return OutcomeForbidden
		}
	}
	return OutcomeNotFound
}

// Teardown is one durable request to destroy a project's sandbox. It is
// recorded in the outbox inside the delete transaction and then handed to the
// queue; the cleanup worker completes it. Its JSON is the outbox payload
// (written by the delete function, functions/delete_threads_v1.sql, with
// these keys) and the body of the queue message (package sqs).
type Teardown struct {
	JobID       string    `json:"job_id,omitempty"`
	ProjectID   string    `json:"project_id,omitempty"`
	AccountID   string    `json:"account_id,omitempty"`
	SandboxID   string    `json:"sandbox_id,omitempty"`
	ResourceID  string    `json:"resource_id,omitempty"`
	ThreadID    string    `json:"thread_id,omitempty"`
	RequestedAt time.Time `json:"requested_at,omitzero"`
}

// CacheWork is the Redis follow-up of one committed delete, recorded in the
// outbox in the same transaction: for each owning account its counters go
// down by what it lost and its cached state goes; every deleted thread's
// message history and deleted project's metadata are dropped; every agent
// run that was still running is told to stop.
//
// It is applied inline after the commit and, when that did not happen, by
// the sweeper in its repair form (counters deleted rather than lowered:
// Kortix rebuilds an absent counter from the database). Adapters guard both
// forms with a marker derived from ID, so the work is applied once.
type CacheWork struct {
	// ID is the outbox row that records the work.
	ID         string         `json:"job_id,omitempty"`
	Accounts   []AccountDelta `json:"accounts"`
	ThreadIDs  []string       `json:"thread_ids"`
	ProjectIDs []string       `json:"project_ids"`
	StopRuns   []string       `json:"stop_runs"`
}

// AccountDelta is what one account lost in a delete.
type AccountDelta struct {
	AccountID string `json:"account_id"`
	Threads   int    `json:"threads"`
	Projects  int    `json:"projects"`
}

// Store runs the delete transaction.
type Store interface {
	// Delete performs the whole database part atomically and returns what
	// it did. ErrInvalidAPIKey and ErrSessionRevoked reject the caller;
	// ErrUnavailable wraps failures to reach the database in time.
	Delete(ctx context.Context, req Request) (Deletion, error)
}

// Cache applies the Redis follow-up inline.
type Cache interface {
	// Apply applies w once (a marker makes a repeat a no-op): counters are
	// lowered, keys dropped, agents told to stop.
	Apply(ctx context.Context, w CacheWork) error
}

// Queue hands teardowns to the cleanup worker.
type Queue interface {
	SendTeardowns(ctx context.Context, ts []Teardown) error
}

// ParseID returns the canonical (lower-case, hyphenated) form of a UUID in
// its 36-character textual form, in any letter case, or ErrInvalidID.
func ParseID(s string) (string, error) {
	if len(s) != 36 {
		return "", ErrInvalidID
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", ErrInvalidID
			}
		default:
			if !isHex(c) {
				return "", ErrInvalidID
			}
		}
	}
	return strings.ToLower(s), nil
}

// ParseIDs canonicalises the ids of a request and drops repeats (in any
// letter case), keeping the order of first appearance. It fails with
// ErrBadRequest for none or more than MaxBulk, and ErrInvalidID for any id
// that is not a UUID.
func ParseIDs(raw []string) ([]string, error) {
	if len(raw) == 0 || len(raw) > MaxBulk {
		return nil, ErrBadRequest
	}
	ids := make([]string, 0, len(raw))
	seen := make(map[string]bool, len(raw))
	for _, r := range raw {
		id, err := ParseID(r)
		if err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
