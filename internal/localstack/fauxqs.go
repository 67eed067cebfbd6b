package localstack

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Fauxqs is the SQS emulator process (npm package fauxqs, pinned in
// package.json and installed by `make tools`).
type Fauxqs struct {
	Endpoint string // http://127.0.0.1:<port>
	Port     int

	proc   *Process
	stderr *Buffer
}

// StartFauxqs runs node_modules/fauxqs under root on port (0: preferred
// when it is free, else any free port; preferred 0: any free port) and
// waits until it accepts connections.
func StartFauxqs(ctx context.Context, root string, port, preferred int) (*Fauxqs, error) {
	cli := filepath.Join(root, "node_modules", "fauxqs", "dist", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		return nil, fmt.Errorf("SQS emulator: %s is missing: run `make tools` (npm ci)", cli)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, errors.New("SQS emulator: node not found on PATH: install Node.js 20 or newer")
	}
	if port == 0 {
		if port = preferred; port == 0 || !portFree(port) {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
	}
	f := &Fauxqs{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port, stderr: &Buffer{Max: 8 << 10}}
	cmd := exec.Command(node, cli)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "FAUXQS_PORT="+strconv.Itoa(port), "FAUXQS_HOST=127.0.0.1", "FAUXQS_LOGGER=false")
	cmd.Stdout = nil // fauxqs logs every request; nobody needs that here
	cmd.Stderr = f.stderr
	if f.proc, err = StartProcess(cmd); err != nil {
		return nil, fmt.Errorf("SQS emulator: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := WaitTCP(ctx, addr, 20*time.Second, f.proc.Exited()); err != nil {
		f.Stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("SQS emulator did not start on port %d (taken?): %w: %s", port, err, strings.TrimSpace(f.stderr.String()))
	}
	return f, nil
}

// Stop ends the emulator (see Process.Stop).
func (f *Fauxqs) Stop() {
	if f != nil {
		f.proc.Stop()
	}
}

// PID is the emulator's process id.
func (f *Fauxqs) PID() int { return f.proc.PID() }

// portFree reports whether fauxqs could listen on port: it binds 0.0.0.0,
// so the wildcard address must be free as well as loopback.
func portFree(port int) bool {
	for _, host := range []string{"127.0.0.1", "0.0.0.0"} {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// SQSRegion is the region of the emulated queues.
const SQSRegion = "us-east-1"

// SQSEnv is the environment that points the AWS SDK's standard settings at
// the SQS emulator at endpoint, with dummy credentials (the emulator takes
// any): what a function process, or this one, needs to reach it.
func SQSEnv(endpoint string) map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL_SQS":  endpoint,
		"AWS_REGION":            SQSRegion,
		"AWS_ACCESS_KEY_ID":     "local",
		"AWS_SECRET_ACCESS_KEY": "local",
	}
}

// SQSClient returns an SDK client for the emulator at endpoint.
func SQSClient(endpoint string) *awssqs.Client {
	return awssqs.New(awssqs.Options{
		Region:       SQSRegion,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  aws.AnonymousCredentials{},
	})
}

// QueueSpec is a queue to create.
type QueueSpec struct {
	Name string
	// Attributes as CreateQueue takes them (VisibilityTimeout: "360", ...).
	Attributes map[string]string
	// DeadLetter, when set, is created first, and messages move to it after
	// MaxReceiveCount receives.
	DeadLetter      *QueueSpec
	MaxReceiveCount int
}

// Queues are a queue and its dead-letter queue ("" without one).
type Queues struct {
	URL, ARN, DLQURL string
}

// CreateQueues creates the queue of spec and its dead-letter queue. Queues
// that already exist under those names (a long-running emulator) are
// updated to the spec's attributes, as a stack update would.
func CreateQueues(ctx context.Context, client *awssqs.Client, spec QueueSpec) (Queues, error) {
	var q Queues
	attrs := maps.Clone(spec.Attributes)
	if attrs == nil {
		attrs = map[string]string{}
	}
	if spec.DeadLetter != nil {
		var err error
		if q.DLQURL, err = ensureQueue(ctx, client, spec.DeadLetter.Name, spec.DeadLetter.Attributes); err != nil {
			return q, err
		}
		dlqARN, err := QueueARN(ctx, client, q.DLQURL)
		if err != nil {
			return q, err
		}
		attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`, dlqARN, spec.MaxReceiveCount)
	}
	var err error
	if q.URL, err = ensureQueue(ctx, client, spec.Name, attrs); err != nil {
		return q, err
	}
	q.ARN, err = QueueARN(ctx, client, q.URL)
	return q, err
}

// ensureQueue creates the queue name with attrs, or sets attrs on the queue
// of that name when it exists with other ones (SQS then refuses the create
// with QueueNameExists), and returns its URL.
func ensureQueue(ctx context.Context, client *awssqs.Client, name string, attrs map[string]string) (string, error) {
	out, err := client.CreateQueue(ctx, &awssqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err == nil {
		return aws.ToString(out.QueueUrl), nil
	}
	var exists *types.QueueNameExists
	if !errors.As(err, &exists) {
		return "", fmt.Errorf("SQS: create %s: %w", name, err)
	}
	got, err := client.GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		return "", fmt.Errorf("SQS: URL of %s: %w", name, err)
	}
	if _, err := client.SetQueueAttributes(ctx, &awssqs.SetQueueAttributesInput{QueueUrl: got.QueueUrl, Attributes: attrs}); err != nil {
		return "", fmt.Errorf("SQS: update the attributes of %s: %w", name, err)
	}
	return aws.ToString(got.QueueUrl), nil
}

// QueueARN returns the ARN of the queue at url.
func QueueARN(ctx context.Context, client *awssqs.Client, url string) (string, error) {
	out, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("SQS: attributes of %s: %w", url, err)
	}
	return out.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}
