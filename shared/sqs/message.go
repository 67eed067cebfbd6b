// Package sqs carries outbox work over Amazon SQS: the message format, and a
// publisher (aws-sdk-go-v2) that the delete-thread function uses to hand a
// teardown to the cleanup worker and the sweeper uses to re-send work.
//
// # Message format, version 1
//
// The body of every message is one JSON object:
//
//	{
//	  "version":      1,                      // required; any other value is rejected
//	  "kind":         "sandbox_teardown",     // required: "sandbox_teardown" or "cache_repair"
//	  "job_id":       "<uuid>",               // required: the thread_delete.outbox row id
//	  "project_id":   "<uuid>",               // teardown only, informative
//	  "account_id":   "<uuid>",               // teardown only, informative
//	  "sandbox_id":   "<daytona id>",         // teardown only, informative
//	  "resource_id":  "<uuid>",               // teardown only, informative, may be absent
//	  "thread_id":    "<uuid>",               // teardown only, informative
//	  "requested_at": "2025-01-02T03:04:05Z"  // teardown only, informative (RFC 3339)
//	}
//
// The outbox row named by job_id is the source of truth: the worker reads
// what to do from it, so a message is only a wake-up call and a cache_repair
// message carries nothing but its job_id. The informative fields make a
// message readable in the console and the dead-letter queue.
//
// Compatibility: fields may be added within version 1 and readers ignore
// fields they do not know; changing the meaning of a field or removing one
// requires a new version, which version-1 readers reject (the message then
// reaches the dead-letter queue instead of being misread).
package sqs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Version is the message format version this package writes and reads.
const Version = 1

// Message kinds.
const (
	KindTeardown    = cleanup.KindTeardown    // "sandbox_teardown"
	KindCacheRepair = cleanup.KindCacheRepair // "cache_repair"
)

// Message is the body of a queued job: the envelope, and for a teardown the
// teardown itself (threads.Teardown defines its fields once, for the outbox
// payload and the message alike; the envelope's job_id is the one that
// counts).
type Message struct {
	Version int    `json:"version"`
	Kind    string `json:"kind"`
	JobID   string `json:"job_id"`

	threads.Teardown
}

// TeardownMessage is the message for a teardown.
func TeardownMessage(t threads.Teardown) Message {
	if !t.RequestedAt.IsZero() {
		t.RequestedAt = t.RequestedAt.UTC()
	}
	job := t.JobID
	t.JobID = "" // the envelope carries it
	return Message{Version: Version, Kind: KindTeardown, JobID: job, Teardown: t}
}

// EntryMessage is the message that re-sends an outbox row. A teardown row
// whose payload cannot be read still gets a message with its job_id: the
// worker then records why the row is unusable.
func EntryMessage(e cleanup.Entry) Message {
	if e.Kind == KindTeardown {
		var t threads.Teardown
		if json.Unmarshal(e.Payload, &t) == nil {
			t.JobID = e.ID
			return TeardownMessage(t)
		}
	}
	return Message{Version: Version, Kind: e.Kind, JobID: e.ID}
}

// Errors of Parse and Encode.
var (
	ErrVersion = errors.New("sqs: unsupported message version")
	ErrKind    = errors.New("sqs: unknown message kind")
	ErrJobID   = errors.New("sqs: job_id is missing or not a UUID")
)

// Validate checks the fields every message must have, and canonicalises the
// job id (lower case).
func (m *Message) Validate() error {
	if m.Version != Version {
		return fmt.Errorf("%w: %d", ErrVersion, m.Version)
	}
	if m.Kind != KindTeardown && m.Kind != KindCacheRepair {
		return fmt.Errorf("%w: %q", ErrKind, truncate(m.Kind, 40))
	}
	id, err := threads.ParseID(m.JobID)
	if err != nil {
		return ErrJobID
	}
	m.JobID = id
	return nil
}

// Encode returns the JSON body of m after validating it.
func Encode(m Message) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// Parse decodes and validates a message body. It rejects anything that is
// not exactly one JSON object of a known version, kind and job id; unknown
// fields are ignored (see the package documentation on compatibility).
func Parse(body []byte) (Message, error) {
	var m Message
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("sqs: malformed message: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Message{}, errors.New("sqs: malformed message: data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return Message{}, err
	}
	return m, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
