package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/kortix-ai/thread-delete/internal/localstack/devenv"
	"github.com/kortix-ai/thread-delete/internal/samtemplate"
)

// Fauxqs is the SQS emulator process (npm package fauxqs, pinned in
// package.json). It runs in a process group of its own so that stopping it
// also stops anything it spawned, and it is killed by the kernel if this
// process dies without cleaning up.
type Fauxqs struct {
	Endpoint string // http://127.0.0.1:<port>
	Port     int

	pid    int
	exited chan struct{}
	stderr *limitedBuffer
}

// StartFauxqs runs node_modules/fauxqs under root on port (0: the preferred
// dev port when free, else any free port) and waits until it accepts
// connections.
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
			if port, err = devenv.FreePort(); err != nil {
				return nil, err
			}
		}
	}
	f := &Fauxqs{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port), Port: port, exited: make(chan struct{}), stderr: &limitedBuffer{max: 8 << 10}}
	cmd := exec.Command(node, cli)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "FAUXQS_PORT="+strconv.Itoa(port), "FAUXQS_HOST=127.0.0.1", "FAUXQS_LOGGER=false")
	cmd.Stdout = nil // fauxqs logs every request; nobody needs that here
	cmd.Stderr = f.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	// Pdeathsig fires when the *thread* that started the child exits, so
	// the start happens on a locked thread that lives until the child does.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(f.exited)
			return
		}
		f.pid = cmd.Process.Pid
		started <- nil
		_ = cmd.Wait()
		close(f.exited)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("SQS emulator: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return f, nil
		}
		select {
		case <-f.exited:
			return nil, fmt.Errorf("SQS emulator exited at start (port %d taken?): %s", port, bytes.TrimSpace(f.stderr.Bytes()))
		case <-ctx.Done():
			f.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			f.Stop()
			return nil, fmt.Errorf("SQS emulator did not listen on %s within 20s: %s", addr, bytes.TrimSpace(f.stderr.Bytes()))
		}
	}
}

// Stop ends the emulator's process group: SIGTERM, then SIGKILL if it is
// still there after two seconds. It returns once the process is gone.
func (f *Fauxqs) Stop() {
	if f == nil || f.pid == 0 {
		return
	}
	_ = syscall.Kill(-f.pid, syscall.SIGTERM)
	select {
	case <-f.exited:
	case <-time.After(2 * time.Second):
		_ = syscall.Kill(-f.pid, syscall.SIGKILL)
		<-f.exited
	}
}

// PID is the emulator's process id (and process group id).
func (f *Fauxqs) PID() int { return f.pid }

// Queues are the teardown queue and its dead-letter queue.
type Queues struct {
	URL, ARN, DLQURL string
}

// CreateQueues creates the teardown queue name and its dead-letter queue
// dlqName with the attributes and redrive policy template.yaml gives them
// (queue and dlq, from samtemplate), and returns their URLs. On an emulator
// that already has them (DEV_SQS_ENDPOINT), they are updated to those
// attributes, as a stack update would.
func CreateQueues(ctx context.Context, client *awssqs.Client, name, dlqName string, queue, dlq samtemplate.SQSQueue) (Queues, error) {
	var q Queues
	var err error
	if q.DLQURL, err = ensureQueue(ctx, client, dlqName, dlq.Attributes); err != nil {
		return q, err
	}
	dlqARN, err := queueARN(ctx, client, q.DLQURL)
	if err != nil {
		return q, err
	}
	attrs := map[string]string{}
	maps.Copy(attrs, queue.Attributes)
	attrs["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`, dlqARN, queue.MaxReceiveCount)
	if q.URL, err = ensureQueue(ctx, client, name, attrs); err != nil {
		return q, err
	}
	q.ARN, err = queueARN(ctx, client, q.URL)
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

func queueARN(ctx context.Context, client *awssqs.Client, url string) (string, error) {
	out, err := client.GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("SQS: attributes of %s: %w", url, err)
	}
	return out.Attributes[string(types.QueueAttributeNameQueueArn)], nil
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	// fauxqs binds 0.0.0.0: the wildcard address must be free too.
	l, err = net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// limitedBuffer keeps the first max bytes written to it (a child's error
// output, for the message when it fails to start).
type limitedBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}
