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
	c, err := Connect(ctx, cfg.DB, cfg.Redis, cfg.QueueURL, cleanupConcurrency)
	if err != nil {
		return nil, nil, err
	}
	return NewSandboxCleanup(cfg, c, log), c.Close, nil
}

// NewSandboxCleanup builds the sandbox-cleanup handler over clients
// already built (see NewDeleteThread); the Daytona client and the sweep's
// timing come from cfg.
func NewSandboxCleanup(cfg config.Cleanup, c *Clients, log *slog.Logger) *handler.Handler {
	outbox := &postgres.OutboxStore{Pool: c.Pool}
	worker := &cleanup.Worker{
		Outbox:      outbox,
		Destroyer:   daytona.New(cfg.DaytonaURL, cfg.DaytonaAPIKey, cfg.DaytonaOrganizationID),
		Log:         log,
		Concurrency: cleanupConcurrency,
		Namespace:   cfg.MetricsNamespace,
	}
	sweeper := &cleanup.Sweeper{Outbox: outbox, Log: log, ResendAfter: cfg.ResendAfter,
		Retention: cfg.Retention, Namespace: cfg.MetricsNamespace}
	// Typed nils must not become non-nil interfaces.
	if c.Cache != nil {
		worker.Cache, sweeper.Cache = c.Cache, c.Cache
	}
	if c.Queue != nil {
		sweeper.Queue = c.Queue
	}
	return &handler.Handler{Worker: worker, Sweeper: sweeper, Log: log}
}
