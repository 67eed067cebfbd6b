package sqs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/testenv"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// setAWSEnv points the SDK's standard settings at the emulator.
func setAWSEnv(t *testing.T, endpoint string) {
	for _, kv := range testenv.AWSEnv(endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

func receiveOne(t *testing.T, client *awssqs.Client, queueURL string) (body string, attrs map[string]string) {
	t.Helper()
	out, err := client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
		QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 2,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("received %d messages, want 1", len(out.Messages))
	}
	attrs = map[string]string{}
	for k, v := range out.Messages[0].MessageAttributes {
		attrs[k] = aws.ToString(v.StringValue)
	}
	return aws.ToString(out.Messages[0].Body), attrs
}

func TestPublisherFromEnvSendsToTheQueue(t *testing.T) {
	ep := testenv.SQS(t)
	queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)
	setAWSEnv(t, ep)

	pub, err := sqs.NewFromEnv(context.Background(), queueURL)
	if err != nil {
		t.Fatal(err)
	}
	td := threads.Teardown{JobID: jobID, ProjectID: "p", AccountID: "a", SandboxID: "sb-9", ThreadID: "t", RequestedAt: time.Now()}
	if err := pub.SendTeardown(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	body, attrs := receiveOne(t, testenv.SQSClient(ep), queueURL)
	m, err := sqs.Parse([]byte(body))
	if err != nil || m.Kind != sqs.KindTeardown || m.JobID != jobID || m.SandboxID != "sb-9" {
		t.Fatalf("received %s (%v)", body, err)
	}
	if attrs["kind"] != "sandbox_teardown" {
		t.Fatalf("kind attribute %q", attrs["kind"])
	}

	// The sweeper's path: a cache repair row goes out with its job id only.
	if err := pub.Resend(context.Background(), cleanup.Entry{ID: jobID, Kind: cleanup.KindCacheRepair}); err != nil {
		t.Fatal(err)
	}
	body, _ = receiveOne(t, testenv.SQSClient(ep), queueURL)
	if m, err := sqs.Parse([]byte(body)); err != nil || m.Kind != sqs.KindCacheRepair || m.SandboxID != "" {
		t.Fatalf("received %s (%v)", body, err)
	}
}

func TestPublisherRefusesInvalidMessages(t *testing.T) {
	// An endpoint nothing listens on: a send that got that far would fail
	// differently.
	pub := &sqs.Publisher{Client: testenv.SQSClient("http://127.0.0.1:1"), QueueURL: "http://127.0.0.1:1/000000000000/q"}
	err := pub.SendTeardown(context.Background(), threads.Teardown{SandboxID: "sb"})
	if err == nil || !strings.Contains(err.Error(), "job_id") {
		t.Fatalf("send without job id: %v", err)
	}
}

func TestNewFromEnvDoesNoIO(t *testing.T) {
	setAWSEnv(t, "http://127.0.0.1:1") // nothing listens there
	start := time.Now()
	if _, err := sqs.NewFromEnv(context.Background(), "http://127.0.0.1:1/000000000000/q"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("construction took %s", d)
	}
	if _, err := sqs.NewFromEnv(context.Background(), ""); err == nil {
		t.Fatal("empty queue URL accepted")
	}
}

func TestPublisherSendFailsWhenQueueIsDown(t *testing.T) {
	setAWSEnv(t, "http://127.0.0.1:1")
	pub, err := sqs.NewFromEnv(context.Background(), "http://127.0.0.1:1/000000000000/q")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := pub.SendTeardown(ctx, threads.Teardown{JobID: jobID, SandboxID: "sb"}); err == nil {
		t.Fatal("send to a dead endpoint succeeded")
	}
}
