// Package app wires the adapters into ready handlers, once per execution
// environment. The functions' main packages and the local dev server call
// it, so that all of them run exactly the same code.
package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/shared/apigw"
	"github.com/kortix-ai/thread-delete/shared/auth"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// DeleteThread builds the delete-thread handler and a function that
// releases its connections. Nothing here connects to anything: the first
// request does.
func DeleteThread(ctx context.Context, cfg config.DeleteThread, log *slog.Logger) (*apigw.Handler, func(), error) {
	c, err := Connect(ctx, cfg.DB, cfg.Redis, cfg.QueueURL, 1)
	if err != nil {
		return nil, nil, err
	}
	h, err := NewDeleteThread(cfg, c, log)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return h, c.Close, nil
}

// NewDeleteThread builds the delete-thread handler over clients already
// built: from the settings by Connect in the function, or pointed at
// emulators and fault-injecting proxies by tests and tools. Only the
// authenticator comes from cfg (its secrets, issuer and audience).
func NewDeleteThread(cfg config.DeleteThread, c *Clients, log *slog.Logger) (*apigw.Handler, error) {
	authenticator, err := auth.New(auth.Config{
		HS256Secret:    []byte(cfg.JWTSecret),
		JWKSURL:        cfg.JWKSURL,
		Audience:       cfg.Audience,
		Issuer:         cfg.Issuer,
		RequireSession: cfg.RequireSession,
		APIKeySecret:   []byte(cfg.APIKeySecret),
		Logger:         log,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &apigw.Handler{Auth: authenticator, Deleter: NewDeleter(c, log), Log: log, Namespace: cfg.MetricsNamespace}, nil
}

// NewDeleter is the domain service over c.
func NewDeleter(c *Clients, log *slog.Logger) *threads.Deleter {
	d := &threads.Deleter{Store: &postgres.Store{Pool: c.Pool}, Log: log}
	// Typed nils must not become non-nil interfaces: a missing cache or
	// queue leaves the work to the sweeper.
	if c.Cache != nil {
		d.Cache = c.Cache
	}
	if c.Queue != nil {
		d.Queue = c.Queue
	}
	return d
}

// Clients are the connections a function holds for its lifetime.
type Clients struct {
	Pool  *pgxpool.Pool
	Cache *redis.Cache
	Queue *sqs.Publisher
}

// Close releases the connections.
func (c *Clients) Close() {
	if c.Pool != nil {
		c.Pool.Close()
	}
	if c.Cache != nil {
		c.Cache.Client.Close()
	}
}

// Connect builds the PostgreSQL pool (connsPerInvoke connections for each
// invoke the environment may run at once), the Redis cache and the queue
// publisher from the settings. None of them connects before first use.
func Connect(ctx context.Context, db config.DB, rc config.Redis, queueURL string, connsPerInvoke int) (*Clients, error) {
	pool, err := postgres.Open(ctx, db, int32(connsPerInvoke*max(lambdacontext.MaxConcurrency(), 1)))
	if err != nil {
		return nil, err
	}
	rdb, err := redis.NewClient(redis.Options{URL: rc.URL, Cluster: rc.Cluster})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("config: REDIS_URL: %w", err)
	}
	queue, err := sqs.NewFromEnv(ctx, queueURL)
	if err != nil {
		pool.Close()
		rdb.Close()
		return nil, err
	}
	return &Clients{Pool: pool, Cache: &redis.Cache{Client: rdb, Cluster: rc.Cluster}, Queue: queue}, nil
}
