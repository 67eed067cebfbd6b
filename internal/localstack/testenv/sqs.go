package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

var sqsOnce sync.Once
var sqsEndpoint string
var sqsErr error

// SQS returns the endpoint URL of an SQS emulator: TEST_SQS_ENDPOINT when
// set, otherwise a fauxqs started once per test binary from the repository's
// node_modules (`make test` runs `npm ci` first). The emulator dies with the
// test binary.
func SQS(tb testing.TB) string {
	tb.Helper()
	if ep := os.Getenv("TEST_SQS_ENDPOINT"); ep != "" {
		return ep
	}
	root := RepoRoot(tb)
	sqsOnce.Do(func() { sqsEndpoint, sqsErr = startFauxqs(root, FreePort(tb)) })
	if sqsErr != nil {
		tb.Fatalf("testenv: SQS emulator: %v", sqsErr)
	}
	return sqsEndpoint
}

// startFauxqs runs fauxqs on port. The process is started from a goroutine
// locked to its OS thread so that Pdeathsig (which follows the thread, not
// the process) kills it when the test binary exits.
func startFauxqs(root string, port int) (string, error) {
	cli := filepath.Join(root, "node_modules", "fauxqs", "dist", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		return "", fmt.Errorf("%s missing: run `npm ci` (make test does)", cli)
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the binary
		cmd := exec.Command("node", cli)
		cmd.Env = append(os.Environ(), fmt.Sprintf("FAUXQS_PORT=%d", port), "FAUXQS_LOGGER=false", "FAUXQS_HOST=127.0.0.1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		// fauxqs logs every request; keep test output readable.
		cmd.Stdout, cmd.Stderr = nil, nil
		started <- cmd.Start()
		if cmd.Process != nil {
			cmd.Wait() //nolint:errcheck
		}
		select {} // keep the thread (and so the child) alive
	}()
	if err := <-started; err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := WaitTCP(addr, 20*time.Second); err != nil {
		return "", err
	}
	return "http://" + addr, nil
}

// SQSClient returns an SDK client for the emulator at endpoint with dummy
// credentials.
func SQSClient(endpoint string) *sqs.Client {
	return sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  aws.AnonymousCredentials{},
	})
}

// AWSEnv is the environment a function process needs to reach the emulator
// through the SDK's standard settings.
func AWSEnv(endpoint string) []string {
	return []string{
		"AWS_ENDPOINT_URL_SQS=" + endpoint,
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
	}
}

// Queue creates a queue with a unique name and returns its URL. With
// maxReceive > 0 it also creates a dead-letter queue and a redrive policy,
// and returns the DLQ's URL as the second value.
func Queue(tb testing.TB, endpoint string, visibility time.Duration, maxReceive int) (queueURL, dlqURL string) {
	tb.Helper()
	ctx := context.Background()
	client := SQSClient(endpoint)
	base := strings.NewReplacer("/", "-", " ", "-", "#", "-").Replace(tb.Name())
	if len(base) > 50 {
		base = base[:50]
	}
	name := fmt.Sprintf("%s-%d", base, time.Now().UnixNano()%1e9)
	attrs := map[string]string{"VisibilityTimeout": fmt.Sprint(int(visibility.Seconds()))}
	if maxReceive > 0 {
		dlq, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name + "-dlq")})
		if err != nil {
			tb.Fatalf("testenv: create DLQ: %v", err)
		}
		dlqURL = *dlq.QueueUrl
		a, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: dlq.QueueUrl, AttributeNames: []types.QueueAttributeName{"QueueArn"}})
		if err != nil {
			tb.Fatalf("testenv: DLQ arn: %v", err)
		}
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, a.Attributes["QueueArn"], maxReceive)
	}
	q, err := client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		tb.Fatalf("testenv: create queue: %v", err)
	}
	return *q.QueueUrl, dlqURL
}

// QueueDepth returns how many messages the queue at queueURL holds: visible,
// in flight (received but not deleted) and delayed. 0 means every message
// sent to it was received and deleted.
func QueueDepth(tb testing.TB, endpoint, queueURL string) int {
	tb.Helper()
	out, err := SQSClient(endpoint).GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		tb.Fatalf("testenv: queue depth: %v", err)
	}
	depth := 0
	for _, v := range out.Attributes {
		n, err := strconv.Atoi(v)
		if err != nil {
			tb.Fatalf("testenv: queue depth: %v", err)
		}
		depth += n
	}
	return depth
}
