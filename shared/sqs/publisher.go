package sqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/shared/awsenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Publisher sends job messages to one SQS queue.
type Publisher struct {
	Client   *awssqs.Client
	QueueURL string
}

var (
	_ threads.Queue    = (*Publisher)(nil)
	_ cleanup.Resender = (*Publisher)(nil)
)

// NewFromEnv returns a Publisher for queueURL whose client takes region,
// credentials and endpoint from the SDK's standard settings (AWS_REGION,
// AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL, the environment's credentials). It does no
// network I/O: credentials are resolved on the first send.
func NewFromEnv(ctx context.Context, queueURL string) (*Publisher, error) {
	if queueURL == "" {
		return nil, errors.New("sqs: empty queue URL")
	}
	return &Publisher{Client: NewClient(), QueueURL: queueURL}, nil
}

// NewClient returns an SQS client with region, credentials and endpoint
// from the environment (see package awsenv). It does no network I/O.
func NewClient() *awssqs.Client {
	return awssqs.NewFromConfig(awsenv.Config(), func(o *awssqs.Options) {
		o.BaseEndpoint = awsenv.Endpoint(awssqs.ServiceID)
	})
}

// maxBatch is the most entries SQS takes in one SendMessageBatch.
const maxBatch = 10

// SendTeardowns hands committed teardowns to the cleanup worker: one
// SendMessageBatch call per ten, the calls in flight at once, so that a
// bulk delete that emptied many projects costs one round trip in time. An
// entry SQS refused is reported in the error; its outbox row stays pending
// and the sweeper re-sends it.
func (p *Publisher) SendTeardowns(ctx context.Context, ts []threads.Teardown) error {
	if len(ts) == 1 {
		return p.Send(ctx, TeardownMessage(ts[0]))
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for start := 0; start < len(ts); start += maxBatch {
		chunk := ts[start:min(start+maxBatch, len(ts))]
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.sendBatch(ctx, chunk); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sendBatch sends up to ten teardowns in one call.
func (p *Publisher) sendBatch(ctx context.Context, ts []threads.Teardown) error {
	// A teardown that cannot be encoded does not hold back the others of
	// its batch; its error is reported with theirs.
	var errs []error
	entries := make([]types.SendMessageBatchRequestEntry, 0, len(ts))
	for i, t := range ts {
		m := TeardownMessage(t)
		body, err := Encode(m)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		entries = append(entries, types.SendMessageBatchRequestEntry{
			Id:                aws.String(strconv.Itoa(i)),
			MessageBody:       aws.String(string(body)),
			MessageAttributes: kindAttribute(m.Kind),
		})
	}
	if len(entries) == 0 {
		return errors.Join(errs...)
	}
	out, err := p.Client.SendMessageBatch(ctx, &awssqs.SendMessageBatchInput{QueueUrl: aws.String(p.QueueURL), Entries: entries})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("sqs: send %d teardowns: %w", len(entries), err))...)
	}
	if len(out.Failed) > 0 {
		f := out.Failed[0]
		errs = append(errs, fmt.Errorf("sqs: %d of %d teardowns refused, first: %s %s", len(out.Failed), len(entries),
			aws.ToString(f.Code), aws.ToString(f.Message)))
	}
	return errors.Join(errs...)
}

func kindAttribute(kind string) map[string]types.MessageAttributeValue {
	return map[string]types.MessageAttributeValue{
		"kind": {DataType: aws.String("String"), StringValue: aws.String(kind)},
	}
}

// Resend puts an outbox row back on the queue (the sweeper's port).
func (p *Publisher) Resend(ctx context.Context, e cleanup.Entry) error {
	return p.Send(ctx, EntryMessage(e))
}

// Send sends one message. The message carries its kind as a message
// attribute too, so that it can be filtered on without parsing the body.
func (p *Publisher) Send(ctx context.Context, m Message) error {
	body, err := Encode(m)
	if err != nil {
		return err
	}
	_, err = p.Client.SendMessage(ctx, &awssqs.SendMessageInput{
		QueueUrl:          aws.String(p.QueueURL),
		MessageBody:       aws.String(string(body)),
		MessageAttributes: kindAttribute(m.Kind),
	})
	if err != nil {
		return fmt.Errorf("sqs: send %s %s: %w", m.Kind, m.JobID, err)
	}
	return nil
}
