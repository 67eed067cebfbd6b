package testenv

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/internal/localstack"
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
	sqsOnce.Do(func() {
		var f *localstack.Fauxqs
		if f, sqsErr = localstack.StartFauxqs(context.Background(), root, 0, 0); sqsErr == nil {
			sqsEndpoint = f.Endpoint
		}
	})
	if sqsErr != nil {
		tb.Fatalf("testenv: %v", sqsErr)
	}
	return sqsEndpoint
}

// SQSClient returns an SDK client for the emulator at endpoint with dummy
// credentials.
func SQSClient(endpoint string) *sqs.Client { return localstack.SQSClient(endpoint) }

// AWSEnv is the environment a function process needs to reach the emulator
// through the SDK's standard settings.
func AWSEnv(endpoint string) []string {
	vars := localstack.SQSEnv(endpoint)
	var env []string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		env = append(env, k+"="+vars[k])
	}
	return env
}

// Queue creates a queue with a unique name and returns its URL. With
// maxReceive > 0 it also creates a dead-letter queue and a redrive policy,
// and returns the DLQ's URL as the second value.
func Queue(tb testing.TB, endpoint string, visibility time.Duration, maxReceive int) (queueURL, dlqURL string) {
	tb.Helper()
	base := strings.NewReplacer("/", "-", " ", "-", "#", "-").Replace(tb.Name())
	if len(base) > 50 {
		base = base[:50]
	}
	spec := localstack.QueueSpec{
		Name:       fmt.Sprintf("%s-%d", base, time.Now().UnixNano()%1e9),
		Attributes: map[string]string{"VisibilityTimeout": fmt.Sprint(int(visibility.Seconds()))},
	}
	if maxReceive > 0 {
		spec.DeadLetter = &localstack.QueueSpec{Name: spec.Name + "-dlq"}
		spec.MaxReceiveCount = maxReceive
	}
	q, err := localstack.CreateQueues(context.Background(), SQSClient(endpoint), spec)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return q.URL, q.DLQURL
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
