package sqs_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// setAWSEnv points the SDK's standard settings at the emulator.
func setAWSEnv(t *testing.T, endpoint string) {
	for _, kv := range testenv.AWSEnv(endpoint) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// received is one message taken off the queue.
type received struct {
	msg  sqs.Message
	kind string // the kind message attribute
}

// depth returns how many messages wait on the queue.
func depth(t *testing.T, client *awssqs.Client, queueURL string) int {
	t.Helper()
	out, err := client.GetQueueAttributes(context.Background(), &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages},
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// receiveAll checks that exactly n messages wait on the queue, takes them
// off and returns them.
func receiveAll(t *testing.T, client *awssqs.Client, queueURL string, n int) []received {
	t.Helper()
	if d := depth(t, client, queueURL); d != n {
		t.Fatalf("%d messages on the queue, want %d", d, n)
	}
	var got []received
	for len(got) < n {
		out, err := client.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 2,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			t.Fatalf("received %d messages, want %d", len(got), n)
		}
		for _, m := range out.Messages {
			msg, err := sqs.Parse([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatalf("received %s: %v", aws.ToString(m.Body), err)
			}
			got = append(got, received{msg: msg, kind: aws.ToString(m.MessageAttributes["kind"].StringValue)})
		}
	}
	return got
}

func teardowns(n int) []threads.Teardown {
	ts := make([]threads.Teardown, n)
	for i := range ts {
		ts[i] = threads.Teardown{JobID: testenv.NewUUID(), ProjectID: testenv.NewUUID(), AccountID: testenv.NewUUID(),
			SandboxID: fmt.Sprintf("sb-%d", i), ThreadID: testenv.NewUUID(), RequestedAt: time.Now()}
	}
	return ts
}

// checkArrived asserts that got holds one teardown message for each of
// want, with its fields and kind attribute.
func checkArrived(t *testing.T, got []received, want []threads.Teardown) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d", len(got), len(want))
	}
	byJob := map[string]received{}
	for _, r := range got {
		if _, dup := byJob[r.msg.JobID]; dup {
			t.Fatalf("job %s arrived twice", r.msg.JobID)
		}
		byJob[r.msg.JobID] = r
	}
	for _, td := range want {
		r, ok := byJob[td.JobID]
		if !ok {
			t.Fatalf("job %s never arrived", td.JobID)
		}
		if r.kind != sqs.KindTeardown || r.msg.Kind != sqs.KindTeardown || r.msg.SandboxID != td.SandboxID ||
			r.msg.ProjectID != td.ProjectID || r.msg.ThreadID != td.ThreadID {
			t.Fatalf("job %s arrived as %+v (kind attribute %q), want %+v", td.JobID, r.msg, r.kind, td)
		}
	}
}

// SendTeardowns delivers every teardown once: one SendMessage for a single
// one, SendMessageBatch calls of up to ten otherwise.
func TestSendTeardowns(t *testing.T) {
	ep := testenv.SQS(t)
	client := testenv.SQSClient(ep)
	for _, n := range []int{1, 3, 10, 23} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)
			pub := &sqs.Publisher{Client: client, QueueURL: queueURL}
			ts := teardowns(n)
			if err := pub.SendTeardowns(context.Background(), ts); err != nil {
				t.Fatal(err)
			}
			checkArrived(t, receiveAll(t, client, queueURL, n), ts)
		})
	}
}

// An entry SQS refuses is reported; the others of its batch and of the
// other batches still arrive (their rows are done with; the refused one's
// stays pending for the sweeper).
func TestSendTeardownsReportsRefusedEntries(t *testing.T) {
	ep := testenv.SQS(t)
	client := testenv.SQSClient(ep)
	for _, n := range []int{1, 3, 23} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)
			pub := &sqs.Publisher{Client: client, QueueURL: queueURL}
			ts := teardowns(n)
			bad := n / 2
			// U+FFFF is outside the characters SQS accepts in a body.
			ts[bad].SandboxID = "sb-\uffff"
			err := pub.SendTeardowns(context.Background(), ts)
			if err == nil || !strings.Contains(err.Error(), "InvalidMessageContents") {
				t.Fatalf("refused entry reported as %v", err)
			}
			if n > 1 && !strings.Contains(err.Error(), "1 of ") {
				t.Fatalf("error %q does not say how many were refused", err)
			}
			checkArrived(t, receiveAll(t, client, queueURL, n-1), slices.Delete(slices.Clone(ts), bad, bad+1))
		})
	}
}

func TestSendTeardownsRefusesInvalidMessages(t *testing.T) {
	// An endpoint nothing listens on: a send that got that far would fail
	// differently.
	pub := &sqs.Publisher{Client: testenv.SQSClient("http://127.0.0.1:1"), QueueURL: "http://127.0.0.1:1/000000000000/q"}
	for _, n := range []int{1, 3} {
		ts := teardowns(n)
		ts[n-1].JobID = ""
		err := pub.SendTeardowns(context.Background(), ts)
		if err == nil || !strings.Contains(err.Error(), "job_id") {
			t.Fatalf("%d teardowns, one without job id: %v", n, err)
		}
	}
}

// A teardown that cannot be encoded is reported and does not hold back the
// others of its batch.
func TestSendTeardownsSendsTheRestOfABatchWithAnInvalidEntry(t *testing.T) {
	ep := testenv.SQS(t)
	client := testenv.SQSClient(ep)
	queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)
	pub := &sqs.Publisher{Client: client, QueueURL: queueURL}
	ts := teardowns(5)
	ts[2].JobID = ""
	if err := pub.SendTeardowns(context.Background(), ts); err == nil || !strings.Contains(err.Error(), "job_id") {
		t.Fatalf("invalid entry reported as %v", err)
	}
	checkArrived(t, receiveAll(t, client, queueURL, 4), slices.Delete(slices.Clone(ts), 2, 3))
}

// The batches of a large set are sent at once, not one after the other:
// with an endpoint that never answers, all three requests for 23
// teardowns are open together.
func TestSendTeardownsBatchesInFlightAtOnce(t *testing.T) {
	hole := testenv.StartBlackhole(t, "")
	pub := &sqs.Publisher{Client: testenv.SQSClient("http://" + hole.Addr), QueueURL: "http://" + hole.Addr + "/000000000000/q"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pub.SendTeardowns(ctx, teardowns(23)) }()
	defer cancel()
	testenv.WaitFor(t, 10*time.Second, "3 requests open while the first is unanswered", func() bool {
		return hole.Accepted() >= 3
	})
	cancel()
	if err := <-done; err == nil {
		t.Fatal("sends to an endpoint that never answered succeeded")
	}
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
	if err := pub.SendTeardowns(context.Background(), []threads.Teardown{td}); err != nil {
		t.Fatal(err)
	}
	client := testenv.SQSClient(ep)
	got := receiveAll(t, client, queueURL, 1)
	if m := got[0].msg; m.Kind != sqs.KindTeardown || m.JobID != jobID || m.SandboxID != "sb-9" || got[0].kind != "sandbox_teardown" {
		t.Fatalf("received %+v with kind attribute %q", m, got[0].kind)
	}

	// The re-send path: a row goes out with its job id, and a teardown
	// with its informative fields.
	if err := pub.Resend(context.Background(), cleanup.Entry{ID: jobID, Kind: cleanup.KindCacheRepair}); err != nil {
		t.Fatal(err)
	}
	if m := receiveAll(t, client, queueURL, 1)[0].msg; m.Kind != sqs.KindCacheRepair || m.SandboxID != "" || m.JobID != jobID {
		t.Fatalf("re-sent %+v", m)
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range []int{1, 3} {
		if err := pub.SendTeardowns(ctx, teardowns(n)); err == nil {
			t.Fatalf("sending %d teardowns to a dead endpoint succeeded", n)
		}
	}
}
