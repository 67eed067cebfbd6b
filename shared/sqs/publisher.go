package sqs

import (
	"context"
	"errors"
	"fmt"

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

// SendTeardown hands a committed teardown to the cleanup worker.
func (p *Publisher) SendTeardown(ctx context.Context, t threads.Teardown) error {
	return p.Send(ctx, TeardownMessage(t))
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
		QueueUrl:    aws.String(p.QueueURL),
		MessageBody: aws.String(string(body)),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"kind": {DataType: aws.String("String"), StringValue: aws.String(m.Kind)},
		},
	})
	if err != nil {
		return fmt.Errorf("sqs: send %s %s: %w", m.Kind, m.JobID, err)
	}
	return nil
}
