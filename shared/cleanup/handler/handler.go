// Package handler adapts Lambda events to the cleanup worker and sweeper.
// The sandbox-cleanup function receives two shapes of event: SQS batches
// (answered with a partial batch response, so that only failed messages are
// retried) and EventBridge scheduled events (which run a sweep).
package handler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/sqs"
)

// Worker is the part of cleanup.Worker the handler uses.
type Worker interface {
	Handle(ctx context.Context, jobs []cleanup.Job) (failedIDs []string)
}

// Sweeper is the part of cleanup.Sweeper the handler uses.
type Sweeper interface {
	Sweep(ctx context.Context) (cleanup.SweepReport, error)
}

var (
	_ Worker  = (*cleanup.Worker)(nil)
	_ Sweeper = (*cleanup.Sweeper)(nil)
)

// Handler is the function's entry point: pass Invoke to lambda.Start.
type Handler struct {
	Worker  Worker
	Sweeper Sweeper
	Log     *slog.Logger
}

// ErrUnsupportedEvent is returned for an event that is neither an SQS batch
// nor a scheduled event; the invocation fails visibly.
var ErrUnsupportedEvent = errors.New("handler: unsupported event: want an SQS batch or an EventBridge scheduled event")

// shape is just enough of an event to tell the kinds apart.
type shape struct {
	Records    *[]json.RawMessage `json:"Records"`
	DetailType string             `json:"detail-type"`
}

// Invoke dispatches on the event's shape: an SQS event (a "Records" array)
// returns an events.SQSEventResponse listing the failed message ids; an
// EventBridge event with detail-type "Scheduled Event" runs a sweep and
// returns its cleanup.SweepReport.
func (h *Handler) Invoke(ctx context.Context, event json.RawMessage) (any, error) {
	var s shape
	if err := json.Unmarshal(event, &s); err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrUnsupportedEvent, err)
	}
	switch {
	case s.Records != nil:
		var ev events.SQSEvent
		if err := json.Unmarshal(event, &ev); err != nil {
			return nil, fmt.Errorf("handler: malformed SQS event: %w", err)
		}
		return h.HandleSQS(ctx, ev), nil
	case s.DetailType == "Scheduled Event":
		if h.Sweeper == nil {
			return nil, errors.New("handler: no sweeper configured")
		}
		rep, err := h.Sweeper.Sweep(ctx)
		if err != nil {
			h.logger().ErrorContext(ctx, "outbox sweep failed", "error", err.Error())
			return nil, err
		}
		return rep, nil
	}
	return nil, ErrUnsupportedEvent
}

// HandleSQS processes one SQS batch. A message that is not a valid job is
// reported failed on its own (it reaches the dead-letter queue after
// maxReceiveCount deliveries) and never affects the rest of the batch.
func (h *Handler) HandleSQS(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	resp := events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{}}
	jobs := make([]cleanup.Job, 0, len(ev.Records))
	for _, r := range ev.Records {
		m, err := sqs.Parse([]byte(r.Body))
		if err != nil {
			h.logger().ErrorContext(ctx, "malformed job message",
				"message_id", r.MessageId, "receive_count", r.Attributes["ApproximateReceiveCount"], "error", err.Error())
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
			continue
		}
		jobs = append(jobs, cleanup.Job{ID: r.MessageId, OutboxID: m.JobID, Kind: m.Kind})
	}
	if len(jobs) > 0 {
		for _, id := range h.Worker.Handle(ctx, jobs) {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: id})
		}
	}
	return resp
}

func (h *Handler) logger() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}
