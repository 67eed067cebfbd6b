package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/shared/app"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
)

// Options configure the dev stack. The zero value of each field means the
// default `make dev` uses.
type Options struct {
	Root        string // repository root (for node_modules); default: found from the working directory
	AdminURL    string // PostgreSQL admin URL; default localstack.AdminURL()
	Database    string // dev database name; default localstack.DatabaseName
	Reset       bool   // drop and re-create the dev database first
	RedisURL    string // default localstack.RedisURL
	Addr        string // API listen address; default 127.0.0.1:3000
	SQSEndpoint string // a running SQS emulator to use instead of starting fauxqs
	SQSPort     int    // port for the started fauxqs; default localstack.SQSPort when free, else any
	QueueName   string // default localstack.QueueName (DLQ: QueueName + "-dlq")
	// CORSOrigins are the browser origins allowed to call the API,
	// comma-separated, in place of the template's CorsAllowedOrigins;
	// default "*" (any).
	CORSOrigins string
	PollWait    time.Duration
	SweepEvery  time.Duration

	Out io.Writer    // the banner; default os.Stdout
	Log *slog.Logger // default: text to os.Stderr
	// Ready, when set, is called once everything runs (tests use it).
	Ready func(*Stack)
}

// Stack describes the running dev stack.
type Stack struct {
	APIURL      string
	DatabaseURL string
	RedisURL    string
	SQSEndpoint string
	Queues      localstack.Queues
	Daytona     *localstack.Daytona
	Fauxqs      *localstack.Fauxqs // nil when an existing emulator was used
	Seed        localstack.DemoSummary
	Mirror      Mirror // what template.yaml sets for the API and the queues
}

// run brings the stack up, serves until ctx ends, then stops everything it
// started, in reverse order, before returning. The delete-thread handler is
// built by app.DeleteThread from config.LoadDeleteThread, exactly as the
// Lambda builds it; only the transport (net/http instead of API Gateway)
// and the logger differ.
func run(ctx context.Context, o Options) error {
	o.defaults()
	log := o.Log

	// Claim the API port first: a busy port is the most common failure and
	// should not cost a database reseed to discover.
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("API: %s is already in use (another `make dev`?); stop that process or choose another port: make dev PORT=3001", o.Addr)
		}
		return fmt.Errorf("API: listen on %s: %w", o.Addr, err)
	}
	defer ln.Close()
	st := &Stack{APIURL: "http://" + ln.Addr().String(), RedisURL: o.RedisURL}
	if st.Mirror, err = loadMirror(o.Root, o.CORSOrigins); err != nil {
		return err
	}

	// PostgreSQL and Redis: the dev database, with fresh demo data.
	log.Info("preparing the dev database", "database", o.Database)
	if st.DatabaseURL, err = localstack.PrepareDatabase(ctx, o.AdminURL, o.Database, o.Reset); err != nil {
		return err
	}
	rdb, err := redis.NewClient(redis.Options{URL: o.RedisURL})
	if err != nil {
		return fmt.Errorf("redis: %s: %w", localstack.Redact(o.RedisURL), err)
	}
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: cannot reach %s (is redis-server running? `make services` starts it): %w", localstack.Redact(o.RedisURL), err)
	}
	if st.Seed, err = localstack.SeedDemo(ctx, st.DatabaseURL, rdb); err != nil {
		return err
	}

	// SQS: the emulator and the queues.
	st.SQSEndpoint = o.SQSEndpoint
	if st.SQSEndpoint == "" {
		log.Info("starting the SQS emulator (fauxqs)")
		if st.Fauxqs, err = localstack.StartFauxqs(ctx, o.Root, o.SQSPort, localstack.SQSPort); err != nil {
			return err
		}
		defer func() {
			st.Fauxqs.Stop()
			log.Info("SQS emulator stopped", "pid", st.Fauxqs.PID())
		}()
		st.SQSEndpoint = st.Fauxqs.Endpoint
	}
	// The AWS SDK reads these, as it does in Lambda; the functions' code
	// gets no special treatment for local runs.
	setAWSEnv(st.SQSEndpoint)
	sqsClient, err := newSQSClient(ctx)
	if err != nil {
		return err
	}
	if st.Queues, err = createQueues(ctx, sqsClient, o.QueueName, o.QueueName+"-dlq", st.Mirror); err != nil {
		return err
	}

	// Daytona: the dev-only stand-in, where every sandbox exists until it
	// is torn down, and every call is logged.
	st.Daytona, err = localstack.StartDaytona(localstack.DaytonaOptions{
		APIKey: localstack.DaytonaAPIKey, AnySandbox: true, Log: log.With("component", "daytona"),
	})
	if err != nil {
		return err
	}
	defer st.Daytona.Close()

	settings := localstack.FunctionEnv(localstack.Endpoints{
		DatabaseURL: st.DatabaseURL, RedisURL: o.RedisURL,
		SQSEndpoint: st.SQSEndpoint, QueueURL: st.Queues.URL,
		DaytonaURL: st.Daytona.URL,
	})
	// Shorter than production's 5m so that the sweep can be watched.
	settings["OUTBOX_RESEND_AFTER"] = "1m"
	env := config.Map(settings)

	// The worker: the sandbox-cleanup handler fed from the queue.
	cleanupCfg, err := config.LoadCleanup(env)
	if err != nil {
		return err
	}
	cleanupHandler, closeCleanup, err := app.SandboxCleanup(ctx, cleanupCfg, log.With("component", "worker"))
	if err != nil {
		return err
	}
	defer closeCleanup()
	poller := &localstack.Poller{
		Client: sqsClient, QueueURL: st.Queues.URL, QueueARN: st.Queues.ARN, Region: localstack.SQSRegion,
		Handler: cleanupHandler.Invoke, Log: log.With("component", "worker"),
		Wait: o.PollWait, SweepEvery: o.SweepEvery,
	}
	pollCtx, stopPolling := context.WithCancel(ctx)
	var polling sync.WaitGroup
	polling.Go(func() { poller.Run(pollCtx) })
	defer func() { stopPolling(); polling.Wait() }()

	// The API: the delete-thread handler behind the gateway stand-in.
	dtCfg, err := config.LoadDeleteThread(env)
	if err != nil {
		return err
	}
	apiLog := log.With("component", "api")
	h, closeAPI, err := app.DeleteThread(ctx, dtCfg, apiLog)
	if err != nil {
		return err
	}
	defer closeAPI()
	srv := &http.Server{
		Handler:           &Gateway{Handler: h.Handle, Log: apiLog, FunctionName: "thread-delete-dev-DeleteThreadFunction", CORS: st.Mirror.CORS},
		ReadHeaderTimeout: 5 * time.Second,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		log.Info("API stopped")
	}()

	if err := printBanner(o.Out, st); err != nil {
		return err
	}
	if o.Ready != nil {
		o.Ready(st)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
		return nil
	case err := <-serveErr:
		return fmt.Errorf("API: %w", err)
	}
}

// newSQSClient is an SQS client configured as the functions configure
// theirs (setAWSEnv has pointed it at the emulator).
func newSQSClient(context.Context) (*awssqs.Client, error) {
	return sqs.NewClient(), nil
}

// setAWSEnv points the AWS SDK's standard settings at the SQS emulator,
// with dummy credentials, and drops profile settings that could make the
// SDK look for a real account.
func setAWSEnv(endpoint string) {
	for k, v := range localstack.SQSEnv(endpoint) {
		os.Setenv(k, v)
	}
	for _, k := range []string{"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"} {
		os.Unsetenv(k)
	}
}

func (o *Options) defaults() {
	if o.Root == "" {
		if root, err := localstack.RepoRoot(); err == nil {
			o.Root = root
		} else {
			o.Root = "."
		}
	}
	if o.AdminURL == "" {
		o.AdminURL = localstack.AdminURL()
	}
	if o.Database == "" {
		o.Database = localstack.DatabaseName
	}
	if o.RedisURL == "" {
		o.RedisURL = localstack.RedisURL
	}
	if o.Addr == "" {
		o.Addr = fmt.Sprintf("127.0.0.1:%d", localstack.APIPort)
	}
	if o.QueueName == "" {
		o.QueueName = localstack.QueueName
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = newLogger(os.Stderr)
	}
}
