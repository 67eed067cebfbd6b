// Package threads is the domain of the service: deleting a conversation
// thread together with everything that hangs off it, and the follow-up work
// (cache invalidation, sandbox teardown) that must happen once the delete has
// committed.
//
// The package knows nothing of AWS, PostgreSQL or Redis. Adapters for those
// live in sibling packages and are wired together in functions/*/main.go.
package threads

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Errors a Deleter returns. The HTTP adapter maps each to one status code;
// anything else is an internal error.
var (
	// ErrInvalidID: the thread id is not a UUID. Detected before any I/O.
	ErrInvalidID = errors.New("threads: invalid thread id")
	// ErrNotFound: no such thread (or it was deleted already).
	ErrNotFound = errors.New("threads: thread not found")
	// ErrForbidden: the thread exists but the caller may not write it.
	ErrForbidden = errors.New("threads: not authorized to modify this thread")
	// ErrInvalidAPIKey: an X-API-Key credential did not match an active key.
	ErrInvalidAPIKey = errors.New("threads: invalid api key")
	// ErrUnavailable wraps failures to reach the database in time; callers
	// may retry. Nothing was changed.
	ErrUnavailable = errors.New("threads: database unavailable")
)

// Caller is the authenticated principal asking for a delete. Exactly one of
// UserID and APIKey is set.
type Caller struct {
	// UserID is the `sub` of a verified JWT (a lower-case UUID).
	UserID string
	// APIKey is set when the request carried X-API-Key. The key is resolved
	// to its account's primary owner inside the delete transaction itself, so
	// that checking it costs no extra round trip.
	APIKey *APIKey
	// SessionID is the JWT's session_id (a lower-case UUID): set only when
	// sessions are required; the store then requires the session to exist
	// in auth.sessions.
	SessionID string
}

// APIKey is a parsed "pk_...:sk_..." credential. SecretHash is the hex
// HMAC-SHA256 of the secret as stored in api_keys.secret_key_hash; the plain
// secret never leaves the authentication layer.
type APIKey struct {
	PublicKey  string
	SecretHash string
}

// Request asks for one thread to be deleted.
type Request struct {
	ThreadID string // canonical lower-case UUID
	Caller   Caller
}

// Outcome is what the store decided inside the transaction.
type Outcome int

const (
	OutcomeDeleted Outcome = iota + 1
	OutcomeNotFound
	OutcomeForbidden
	OutcomeInvalidAPIKey
)

func (o Outcome) String() string {
	switch o {
	case OutcomeDeleted:
		return "deleted"
	case OutcomeNotFound:
		return "not_found"
	case OutcomeForbidden:
		return "forbidden"
	case OutcomeInvalidAPIKey:
		return "invalid_api_key"
	}
	return "unknown"
}

// Deletion reports what one committed delete transaction did.
type Deletion struct {
	Outcome Outcome
	// AccountID is the thread's owning account ("" when the thread had none).
	AccountID string
	// ProjectID is the thread's project ("" when it had none).
	ProjectID string
	// ThreadIDs lists every thread removed: the requested one first, then its
	// descendant sub-agent threads.
	ThreadIDs []string
	// ProjectDeleted is true when the last thread of the project went and
	// the project with it.
	ProjectDeleted bool
	// Messages and Runs count the rows removed with the threads.
	Messages, Runs int64
	// Teardown is set when the deleted project owned a sandbox; its outbox
	// row was written in the same transaction.
	Teardown *Teardown
}

// Teardown is one durable request to destroy a project's sandbox. It is
// recorded in the outbox inside the delete transaction and then handed to the
// queue; the cleanup worker completes it.
type Teardown struct {
	JobID       string    `json:"job_id"`
	ProjectID   string    `json:"project_id"`
	AccountID   string    `json:"account_id"`
	SandboxID   string    `json:"sandbox_id"`
	ResourceID  string    `json:"resource_id,omitempty"`
	ThreadID    string    `json:"thread_id"`
	RequestedAt time.Time `json:"requested_at"`
}

// Invalidation is the Redis work that follows a committed delete: counters of
// the owning account go down, caches of the account, project and threads go.
type Invalidation struct {
	// Key identifies this invalidation so that re-applying it is harmless
	// (the requested thread id: a thread is deleted once).
	Key            string   `json:"key"`
	AccountID      string   `json:"account_id"`
	ProjectID      string   `json:"project_id,omitempty"`
	ThreadIDs      []string `json:"thread_ids"`
	ProjectDeleted bool     `json:"project_deleted"`
}

// Store runs the delete transaction and records follow-up work that failed.
type Store interface {
	// Delete performs the whole database part atomically. It returns a
	// Deletion whose Outcome says whether anything happened; errors are
	// reserved for failures (wrapped in ErrUnavailable when the database
	// could not be reached in time).
	Delete(ctx context.Context, req Request) (Deletion, error)
	// RecordCacheRepair durably stores an invalidation that could not be
	// applied, for the cleanup worker to retry.
	RecordCacheRepair(ctx context.Context, inv Invalidation, cause string) error
}

// Cache applies invalidations (counters and cached keys).
type Cache interface {
	Invalidate(ctx context.Context, inv Invalidation) error
}

// Queue hands a teardown to the cleanup worker.
type Queue interface {
	SendTeardown(ctx context.Context, t Teardown) error
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

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
