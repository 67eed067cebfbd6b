// Command sandbox-cleanup is the cleanup worker Lambda: it completes
// queued outbox work (sandbox teardowns at Daytona, cache repairs in Redis)
// from SQS batches, and runs the outbox sweep on EventBridge schedules.
package main

import (
	"context"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/cleanup/handler"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/daytona"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
)

// concurrency is how many items of a batch run at once; each needs a
// database connection while it reads or writes the outbox.
const concurrency = 4

func main() {
	log := lambdacontext.NewLogger()
	fail := func(err error) {
		log.Error("sandbox-cleanup init failed: " + err.Error())
		os.Exit(1)
	}
	ctx := context.Background()

	// Nothing below does network I/O: connections are made on first use.
	cfg, err := config.LoadCleanup(os.LookupEnv)
	if err != nil {
		fail(err)
	}
	pool, err := postgres.Open(ctx, cfg.DB, int32(concurrency*lambdacontext.MaxConcurrency()))
	if err != nil {
		fail(err)
	}
	rdb, err := redis.NewClient(redis.Options{URL: cfg.Redis.URL, Cluster: cfg.Redis.Cluster})
	if err != nil {
		fail(err)
	}
	queue, err := sqs.NewFromEnv(ctx, cfg.QueueURL)
	if err != nil {
		fail(err)
	}
	outbox := &postgres.OutboxStore{Pool: pool}

	h := &handler.Handler{
		Worker: &cleanup.Worker{
			Outbox:      outbox,
			Destroyer:   daytona.New(cfg.DaytonaURL, cfg.DaytonaAPIKey, cfg.DaytonaOrganizationID),
			Cache:       &redis.Cache{Client: rdb, Cluster: cfg.Redis.Cluster},
			Log:         log,
			Concurrency: concurrency,
		},
		Sweeper: &cleanup.Sweeper{
			Outbox:      outbox,
			Queue:       queue,
			Log:         log,
			ResendAfter: cfg.ResendAfter,
		},
		Log: log,
	}
	lambda.StartWithOptions(h.Invoke, lambda.WithEnableSIGTERM(func() {
		pool.Close()
		rdb.Close()
	}))
}
