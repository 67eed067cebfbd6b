package app

import (
	"context"
	"log/slog"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/cleanup/handler"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/daytona"
	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// cleanupConcurrency is how many items of an SQS batch run at once; each
// needs a database connection while it reads or writes the outbox.
const cleanupConcurrency = 4

// SandboxCleanup builds the sandbox-cleanup handler (SQS worker and outbox
// sweeper) and a function that releases its connections. Nothing here
// connects to anything: the first event does.
func SandboxCleanup(ctx context.Context, cfg config.Cleanup, log *slog.Logger) (*handler.Handler, func(), error) {
	c, err := connect(ctx, cfg.DB, cfg.Redis, cfg.QueueURL, cleanupConcurrency)
	if err != nil {
		return nil, nil, err
	}
	outbox := &postgres.OutboxStore{Pool: c.pool}
	h := &handler.Handler{
		Worker: &cleanup.Worker{
			Outbox:      outbox,
			Destroyer:   daytona.New(cfg.DaytonaURL, cfg.DaytonaAPIKey, cfg.DaytonaOrganizationID),
			Cache:       c.cache,
			Log:         log,
			Concurrency: cleanupConcurrency,
			Namespace:   cfg.MetricsNamespace,
		},
		Sweeper: &cleanup.Sweeper{
			Outbox:      outbox,
			Queue:       c.queue,
			Cache:       c.cache,
			Log:         log,
			ResendAfter: cfg.ResendAfter,
			Retention:   cfg.Retention,
			Namespace:   cfg.MetricsNamespace,
		},
		Log: log,
	}
	return h, c.close, nil
}
