package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/cleanup/handler"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/daytona"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
)

// cleanupConcurrency is how many items of an SQS batch run at once; each
// needs a database connection while it reads or writes the outbox.
const cleanupConcurrency = 4

// SandboxCleanup builds the sandbox-cleanup handler (SQS worker and outbox
// sweeper) and a function that releases its connections. Nothing here
// connects to anything: the first event does.
func SandboxCleanup(ctx context.Context, cfg config.Cleanup, log *slog.Logger) (*handler.Handler, func(), error) {
	pool, err := postgres.Open(ctx, cfg.DB, int32(cleanupConcurrency*max(lambdacontext.MaxConcurrency(), 1)))
	if err != nil {
		return nil, nil, err
	}
	rdb, err := redis.NewClient(redis.Options{URL: cfg.Redis.URL, Cluster: cfg.Redis.Cluster})
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("config: REDIS_URL: %w", err)
	}
	queue, err := sqs.NewFromEnv(ctx, cfg.QueueURL)
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, nil, err
	}
	outbox := &postgres.OutboxStore{Pool: pool}
	h := &handler.Handler{
		Worker: &cleanup.Worker{
			Outbox:      outbox,
			Destroyer:   daytona.New(cfg.DaytonaURL, cfg.DaytonaAPIKey, cfg.DaytonaOrganizationID),
			Cache:       &redis.Cache{Client: rdb, Cluster: cfg.Redis.Cluster},
			Log:         log,
			Concurrency: cleanupConcurrency,
		},
		Sweeper: &cleanup.Sweeper{
			Outbox:      outbox,
			Queue:       queue,
			Log:         log,
			ResendAfter: cfg.ResendAfter,
		},
		Log: log,
	}
	return h, func() { pool.Close(); rdb.Close() }, nil
}
