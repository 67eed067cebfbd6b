// Command outbox is the operator's tool for the service's outbox and its
// queues (make outbox ARGS="…"):
//
//	outbox list [-status pending|dead|all] [-kind KIND] [-limit N]
//	    pending and dead jobs, oldest first, with their last error, and the
//	    totals by kind and status
//	outbox requeue JOB_ID... | outbox requeue -all
//	    resets dead jobs to pending; teardowns are sent to the queue at once
//	    (and re-sent by the sweeper if that fails), Redis work is completed
//	    by the next sweep
//	outbox redrive [-max N]
//	    moves the dead-letter queue's messages back to the queue, in batches
//	    of ten (receive, send, delete), each message once
//
// Settings come from the environment, as for the functions: DATABASE_URL
// (or DB_SECRET_ARN, or DB_IAM_AUTH with DB_HOST, DB_NAME, DB_USER) for list
// and requeue; SANDBOX_CLEANUP_QUEUE_URL for requeue and redrive;
// SANDBOX_CLEANUP_DLQ_URL for redrive; AWS_REGION, the credentials
// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and
// AWS_ENDPOINT_URL_SQS for SQS. Every action prints what it did; the exit
// status is 0 when everything asked for was done, 1 when something was not,
// 2 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/sqs"
)

const usage = `usage: outbox <command> [flags]

  list [-status pending|dead|all] [-kind KIND] [-limit N]
        pending and dead jobs with their last error (default: both, 50 oldest)
  requeue JOB_ID... | requeue -all
        reset dead jobs to pending and send their teardowns to the queue
  redrive [-max N]
        move the dead-letter queue's messages back to the queue

settings: DATABASE_URL (list, requeue), SANDBOX_CLEANUP_QUEUE_URL (requeue,
redrive), SANDBOX_CLEANUP_DLQ_URL (redrive), AWS_REGION and credentials
`

// env is what a run reads from outside: settings, output, and the SQS
// client (built from the environment unless a test passes one).
type env struct {
	vars config.Env
	out  io.Writer
	sqs  *awssqs.Client
}

// errUsage marks a command line that could not be understood.
var errUsage = errors.New("usage")

// errIncomplete means some of what was asked could not be done; what was
// done has been printed.
var errIncomplete = errors.New("not everything was done")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], env{vars: os.LookupEnv, out: os.Stdout})
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "outbox:", err)
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "outbox:", err)
		os.Exit(1)
	}
}

// run executes one command line.
func run(ctx context.Context, args []string, e env) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	switch cmd {
	case "list":
		status := fs.String("status", "open", "pending, dead, or all (open: pending and dead)")
		kind := fs.String("kind", "", "only this kind (sandbox_teardown, redis_work, cache_repair)")
		limit := fs.Int("limit", 50, "most jobs shown")
		if err := parse(fs, args, false); err != nil {
			return err
		}
		f, err := newListFilter(*status, *kind, *limit)
		if err != nil {
			return err
		}
		return withStore(ctx, e, func(s *store) error { return s.list(ctx, e.out, f) })
	case "requeue":
		all := fs.Bool("all", false, "every dead job")
		if err := parse(fs, args, true); err != nil {
			return err
		}
		ids := fs.Args()
		if *all == (len(ids) > 0) {
			return fmt.Errorf("%w: requeue takes job ids or -all", errUsage)
		}
		pub, err := publisher(e)
		if err != nil {
			return err
		}
		return withStore(ctx, e, func(s *store) error { return s.requeue(ctx, e.out, pub, ids, *all) })
	case "redrive":
		max := fs.Int("max", 0, "move at most this many messages (0: all)")
		if err := parse(fs, args, false); err != nil {
			return err
		}
		to, err := setting(e, "SANDBOX_CLEANUP_QUEUE_URL")
		if err != nil {
			return err
		}
		from, err := setting(e, "SANDBOX_CLEANUP_DLQ_URL")
		if err != nil {
			return err
		}
		r := &redriver{client: client(e), from: from, to: to, out: e.out, max: *max}
		return r.run(ctx)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
}

// parse parses flags; positional arguments are allowed only with
// positional, and may come before or after the flags.
func parse(fs *flag.FlagSet, args []string, positional bool) error {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	if len(rest) > 0 && !positional {
		return fmt.Errorf("%w: %s takes no arguments, got %q", errUsage, fs.Name(), strings.Join(rest, " "))
	}
	return fs.Parse(rest) // leaves rest as fs.Args()
}

func setting(e env, name string) (string, error) {
	v, _ := e.vars(name)
	if v = strings.TrimSpace(v); v == "" {
		return "", fmt.Errorf("%s must be set", name)
	}
	return v, nil
}

func client(e env) *awssqs.Client {
	if e.sqs != nil {
		return e.sqs
	}
	return sqs.NewClient()
}

func publisher(e env) (*sqs.Publisher, error) {
	url, err := setting(e, "SANDBOX_CLEANUP_QUEUE_URL")
	if err != nil {
		return nil, err
	}
	return &sqs.Publisher{Client: client(e), QueueURL: url}, nil
}

// withStore connects to the database for the duration of fn.
func withStore(ctx context.Context, e env, fn func(*store) error) error {
	db, err := config.LoadDB(e.vars)
	if err != nil {
		return err
	}
	pool, err := postgres.Open(ctx, db, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(&store{pool: pool})
}
