package apigw_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/apigw"
	"github.com/kortix-ai/thread-delete/shared/app"
	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// apiKeySecret is the HMAC key the stack's API keys are hashed with.
const apiKeySecret = "test-api-key-secret"

// stack is the delete-thread handler wired to real PostgreSQL, Redis and
// SQS (fauxqs), with proxies in front of PostgreSQL and Redis for faults.
type stack struct {
	testenv.Seeder
	handler  *apigw.Handler
	rdb      *goredis.Client
	sqs      *awssqs.Client
	queueURL string
	pgProxy  *testenv.Proxy
	rdProxy  *testenv.Proxy
}

type stackOptions struct {
	noAPIKeySecret bool
	queueURL       string // override (e.g. an unreachable endpoint)
	pgTarget       string // where the service's PostgreSQL connections go (default: the server), e.g. a PgBouncer
	requireSession bool   // JWT_REQUIRE_SESSION
}

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	dbURL := testenv.Database(t)
	redisURL, rdb := testenv.Redis(t)
	ep := testenv.SQS(t)
	queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)

	pgTarget := testenv.PostgresAddr()
	if o.pgTarget != "" {
		pgTarget = o.pgTarget
	}
	pgProxy := testenv.StartProxy(t, pgTarget)
	pool := testenv.ServicePool(t, testenv.ViaAddr(dbURL, pgProxy.Addr), 2)
	rdProxy := testenv.StartProxy(t, testenv.RedisAddr())
	client, err := redis.NewClient(redis.Options{URL: testenv.RedisViaAddr(redisURL, rdProxy.Addr), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	cfg := config.DeleteThread{JWTSecret: testenv.JWTSecret, Audience: "authenticated", APIKeySecret: apiKeySecret,
		RequireSession: o.requireSession}
	if o.noAPIKeySecret {
		cfg.APIKeySecret = ""
	}
	sqsClient := testenv.SQSClient(ep)
	pubURL := queueURL
	if o.queueURL != "" {
		pubURL = o.queueURL
	}
	// The function's own wiring, over clients pointed at the proxies.
	h, err := app.NewDeleteThread(cfg, &app.Clients{
		Pool:  pool,
		Cache: &redis.Cache{Client: client},
		Queue: &sqs.Publisher{Client: sqsClient, QueueURL: pubURL},
	}, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	h.Deleter.(*threads.Deleter).FollowUpTimeout = time.Second
	return &stack{
		Seeder:  testenv.Seeder{TB: t, Pool: testenv.Pool(t, dbURL)},
		handler: h,
		rdb:     rdb, sqs: sqsClient, queueURL: queueURL, pgProxy: pgProxy, rdProxy: rdProxy,
	}
}

// event loads events/delete-thread.json and points it at threadID with the
// given headers (nil value = header removed).
func event(t *testing.T, threadID string, headers map[string]string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "events", "delete-thread.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	ev.RawPath = "/threads/" + threadID
	ev.RequestContext.HTTP.Path = ev.RawPath
	ev.PathParameters = map[string]string{"thread_id": threadID}
	delete(ev.Headers, "authorization")
	for k, v := range headers {
		ev.Headers[k] = v
	}
	return ev
}

func bearer(user string) map[string]string {
	return map[string]string{"authorization": "Bearer " + testenv.Token(user)}
}

func (s *stack) delete(t *testing.T, threadID string, headers map[string]string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.handler.Handle(ctx, event(t, threadID, headers))
	if err != nil {
		t.Fatalf("handler returned an error: %v", err)
	}
	return resp
}

// receive returns the teardown messages waiting in the queue.
func (s *stack) receive(t *testing.T, wait int32) []sqs.Message {
	t.Helper()
	out, err := s.sqs.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{
		QueueUrl: aws.String(s.queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: wait,
	})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []sqs.Message
	for _, m := range out.Messages {
		msg, err := sqs.Parse([]byte(*m.Body))
		if err != nil {
			t.Fatalf("queue holds an unparsable message: %v", err)
		}
		msgs = append(msgs, msg)
	}
	return msgs
}

// redisState reads the keys a delete may touch.
func (s *stack) redisState(keys ...string) map[string]string {
	out := map[string]string{}
	for _, k := range keys {
		v, err := s.rdb.Get(context.Background(), k).Result()
		if err == goredis.Nil {
			v = "<absent>"
		}
		out[k] = v
	}
	return out
}

func expect(t *testing.T, resp events.APIGatewayV2HTTPResponse, status int, body map[string]string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, status, resp.Body)
	}
	if ct := resp.Headers["Content-Type"]; ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	var got map[string]string
	if err := json.Unmarshal([]byte(resp.Body), &got); err != nil {
		t.Fatalf("body %q is not a JSON object of strings: %v", resp.Body, err)
	}
	if body == nil {
		return
	}
	if len(got) != len(body) {
		t.Fatalf("body = %v, want %v", got, body)
	}
	for k, v := range body {
		if got[k] != v {
			t.Fatalf("body = %v, want %v", got, body)
		}
	}
}

// controlListener receives what is published on the control channels of
// some agent runs (agent_run:{id}:control) of the stack's Redis. Pub/sub is
// not scoped by Redis database, so it listens to named channels only: other
// tests publish on theirs at the same time.
type controlListener struct {
	ps       *goredis.PubSub
	rdb      *goredis.Client
	sentinel string
}

// listenControl subscribes to the control channels of runs before
// returning, so nothing published after it is missed.
func (s *stack) listenControl(t *testing.T, runs ...string) *controlListener {
	t.Helper()
	ctx := context.Background()
	l := &controlListener{rdb: s.rdb, sentinel: "test-sentinel:" + testenv.NewUUID()}
	channels := []string{l.sentinel}
	for _, r := range runs {
		channels = append(channels, "agent_run:"+r+":control")
	}
	l.ps = s.rdb.Subscribe(ctx, channels...)
	for range channels { // one confirmation per channel
		if _, err := l.ps.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { l.ps.Close() })
	return l
}

// drain returns what was published per channel since the last drain. It
// publishes on its sentinel channel and reads up to that message: Redis
// delivers in order, so everything published before is in hand, and
// "nothing" is a sure answer rather than a timeout.
func (l *controlListener) drain(t *testing.T) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.rdb.Publish(ctx, l.sentinel, "end").Err(); err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for {
		m, err := l.ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("control channels: %v", err)
		}
		if m.Channel == l.sentinel {
			return got
		}
		got[m.Channel] = append(got[m.Channel], m.Payload)
	}
}

// sweep runs one outbox sweep against the stack's database, Redis and
// queue, as the scheduled sandbox-cleanup function does.
func (s *stack) sweep(t *testing.T) cleanup.SweepReport {
	t.Helper()
	sw := &cleanup.Sweeper{
		Outbox: &postgres.OutboxStore{Pool: s.Pool},
		Queue:  &sqs.Publisher{Client: s.sqs, QueueURL: s.queueURL},
		Cache:  &redis.Cache{Client: s.rdb},
	}
	rep, err := sw.Sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}
