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
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	c, err := connect(ctx, cfg.DB, cfg.Redis, cfg.QueueURL, 1)
	if err != nil {
		return nil, nil, err
	}
	h := &apigw.Handler{
		Auth: authenticator,
		Deleter: &threads.Deleter{
			Store: &postgres.Store{Pool: c.pool},
			Cache: c.cache,
			Queue: c.queue,
			Log:   log,
		},
		Log:       log,
		Namespace: cfg.MetricsNamespace,
	}
	return h, c.close, nil
}

// clients are the connections a function holds for its lifetime.
type clients struct {
	pool  *pgxpool.Pool
	cache *redis.Cache
	queue *sqs.Publisher
}

func (c *clients) close() {
	c.pool.Close()
	c.cache.Client.Close()
}

// connect builds the PostgreSQL pool (connsPerInvoke connections for each
// invoke the environment may run at once), the Redis cache and the queue
// publisher. None of them connects before first use.
func connect(ctx context.Context, db config.DB, rc config.Redis, queueURL string, connsPerInvoke int) (*clients, error) {
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
	return &clients{pool: pool, cache: &redis.Cache{Client: rdb, Cluster: rc.Cluster}, queue: queue}, nil
}
