package localstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// EventHandler is the shape of the sandbox-cleanup Lambda's handler
// (handler.Handler.Invoke): it takes any event as raw JSON. Its result is
// an events.SQSEventResponse (or a pointer to one), or the response's JSON
// as a function under the runtime emulator returns it.
type EventHandler func(ctx context.Context, event json.RawMessage) (any, error)

// Poller does locally what Lambda's SQS event source mapping and an
// EventBridge schedule do for the sandbox-cleanup function: it long-polls
// the queue, hands each batch to the handler as an events.SQSEvent, deletes
// the messages the handler did not report in batchItemFailures (the failed
// ones come back after the visibility timeout, and reach the DLQ after
// maxReceiveCount), and every SweepEvery sends the handler a scheduled event
// so the outbox sweep runs. One batch at a time, like one execution
// environment. `make dev` runs it (Run); a test delivers batch by batch
// (Poll).
type Poller struct {
	Client     *awssqs.Client
	QueueURL   string
	QueueARN   string
	Region     string
	Handler    EventHandler
	Log        *slog.Logger  // nil: no logs
	Wait       time.Duration // long-poll wait; zero means 20s, what Lambda's event source mapping waits
	SweepEvery time.Duration // zero means 30s
	Timeout    time.Duration // per invocation (the function's Timeout); zero means 30s
}

// errReceive marks a failed ReceiveMessage: nothing was delivered.
var errReceive = errors.New("receive from the queue failed")

// Run polls until ctx ends. A batch already handed to the handler is
// finished (within Timeout) even when ctx ends meanwhile, so that a Ctrl-C
// does not leave a half-recorded teardown behind.
func (p *Poller) Run(ctx context.Context) {
	nextSweep := time.Now() // sweep once at start: leftovers of a previous session
	for ctx.Err() == nil {
		if !time.Now().Before(nextSweep) {
			p.sweep(ctx)
			nextSweep = time.Now().Add(durationOr(p.SweepEvery, 30*time.Second))
		}
		_, err := p.Poll(ctx, durationOr(p.Wait, 20*time.Second))
		if err == nil || ctx.Err() != nil {
			continue
		}
		if !errors.Is(err, errReceive) {
			continue // logged by Poll
		}
		p.log().Warn("receive from the queue failed; retrying", "error", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// Poll receives one batch, waiting up to wait for a message, hands it to
// the handler and deletes the messages it did not report as failed. It
// returns how many messages it delivered, and an error when it could not
// receive or the handler failed as a whole (Lambda then retries the whole
// batch, as here: nothing is deleted). A batch handed to the handler is
// finished (within Timeout) even when ctx ends meanwhile.
func (p *Poller) Poll(ctx context.Context, wait time.Duration) (int, error) {
	out, err := p.Client.ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(p.QueueURL),
		MaxNumberOfMessages:         10,
		WaitTimeSeconds:             int32(wait / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errReceive, err)
	}
	if len(out.Messages) == 0 {
		return 0, nil
	}
	return len(out.Messages), p.handle(context.WithoutCancel(ctx), out.Messages)
}

func (p *Poller) log() *slog.Logger {
	if p.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Log
}

// handle invokes the handler with one batch and deletes what succeeded.
func (p *Poller) handle(ctx context.Context, msgs []types.Message) error {
	ev := toSQSEvent(msgs, p.QueueARN, p.Region)
	raw, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode SQS event: %w", err)
	}
	ictx, cancel := context.WithTimeout(ctx, durationOr(p.Timeout, 30*time.Second))
	defer cancel()
	res, err := p.Handler(ictx, raw)
	var resp events.SQSEventResponse
	switch r := res.(type) {
	case events.SQSEventResponse:
		resp = r
	case *events.SQSEventResponse:
		if r != nil {
			resp = *r
		}
	case json.RawMessage:
		// A function under the runtime emulator: its handler's error is
		// an errorMessage body.
		var failure struct {
			ErrorMessage *string `json:"errorMessage"`
		}
		if err == nil && json.Unmarshal(r, &failure) == nil && failure.ErrorMessage != nil {
			err = errors.New(*failure.ErrorMessage)
		}
		if err == nil {
			if uerr := json.Unmarshal(r, &resp); uerr != nil {
				err = fmt.Errorf("not an SQS batch response: %w: %s", uerr, r)
			}
		}
	}
	if err != nil || res == nil {
		// The whole invocation failed: Lambda would retry the whole batch.
		p.log().Error("cleanup invocation failed; the batch comes back after the visibility timeout", "error", errText(err))
		return fmt.Errorf("cleanup invocation failed: %s", errText(err))
	}
	failed := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	var entries []types.DeleteMessageBatchRequestEntry
	for i, m := range msgs {
		if failed[aws.ToString(m.MessageId)] {
			continue
		}
		entries = append(entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
	}
	if len(failed) > 0 {
		p.log().Warn("cleanup reported failed messages; they come back after the visibility timeout", "failed", len(failed), "of", len(msgs))
	}
	if len(entries) == 0 {
		return nil
	}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	defer dcancel()
	out, err := p.Client.DeleteMessageBatch(dctx, &awssqs.DeleteMessageBatchInput{QueueUrl: aws.String(p.QueueURL), Entries: entries})
	if err == nil && len(out.Failed) > 0 {
		err = errors.New(aws.ToString(out.Failed[0].Message))
	}
	if err != nil {
		// Harmless: the worker is idempotent and acknowledges a redelivery.
		p.log().Warn("deleting handled messages failed; they will be redelivered", "error", err.Error())
	}
	return nil
}

// sweep invokes the handler with an EventBridge scheduled event.
func (p *Poller) sweep(ctx context.Context) {
	now := time.Now().UTC()
	ev := map[string]any{
		"version": "0", "id": NewUUID(), "detail-type": "Scheduled Event", "source": "aws.events",
		"account": "000000000000", "time": now.Format(time.RFC3339), "region": p.Region,
		"resources": []string{"arn:aws:events:" + p.Region + ":000000000000:rule/dev-outbox-sweep"}, "detail": map[string]any{},
	}
	raw, _ := json.Marshal(ev)
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), durationOr(p.Timeout, 30*time.Second))
	defer cancel()
	if _, err := p.Handler(ictx, raw); err != nil {
		p.log().Warn("outbox sweep failed; the next one retries", "error", err.Error())
	}
}

// toSQSEvent shapes received messages as Lambda's SQS event source does.
func toSQSEvent(msgs []types.Message, queueARN, region string) events.SQSEvent {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(msgs))}
	for _, m := range msgs {
		rec := events.SQSMessage{
			MessageId:         aws.ToString(m.MessageId),
			ReceiptHandle:     aws.ToString(m.ReceiptHandle),
			Body:              aws.ToString(m.Body),
			Md5OfBody:         aws.ToString(m.MD5OfBody),
			Attributes:        map[string]string{},
			MessageAttributes: map[string]events.SQSMessageAttribute{},
			EventSource:       "aws:sqs",
			EventSourceARN:    queueARN,
			AWSRegion:         region,
		}
		rec.Md5OfMessageAttributes = aws.ToString(m.MD5OfMessageAttributes)
		for k, v := range m.Attributes {
			rec.Attributes[k] = v
		}
		for k, v := range m.MessageAttributes {
			rec.MessageAttributes[k] = events.SQSMessageAttribute{
				DataType:    aws.ToString(v.DataType),
				StringValue: v.StringValue,
				BinaryValue: v.BinaryValue,
			}
		}
		ev.Records = append(ev.Records, rec)
	}
	return ev
}

func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func errText(err error) string {
	if err == nil {
		return "no response"
	}
	return err.Error()
}
