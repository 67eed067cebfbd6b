// Package app wires the adapters into ready handlers, once per execution
// environment. The functions' main packages and the local dev server call
// it, so that all of them run exactly the same code.
package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/aws-lambda-go/lambdacontext"

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
		HS256Secret:  []byte(cfg.JWTSecret),
		JWKSURL:      cfg.JWKSURL,
		Audience:     cfg.Audience,
		Issuer:       cfg.Issuer,
		APIKeySecret: []byte(cfg.APIKeySecret),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	pool, err := postgres.Open(ctx, cfg.DB, poolSize())
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
	h := &apigw.Handler{
		Auth: authenticator,
		Deleter: &threads.Deleter{
			Store: &postgres.Store{Pool: pool},
			Cache: &redis.Cache{Client: rdb, Cluster: cfg.Redis.Cluster},
			Queue: queue,
			Log:   log,
		},
		Log: log,
	}
	return h, func() { pool.Close(); rdb.Close() }, nil
}

// poolSize is one connection per invoke the environment may run at once.
func poolSize() int32 {
	return int32(max(lambdacontext.MaxConcurrency(), 1))
}
