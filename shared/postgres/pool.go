// Package postgres is the PostgreSQL adapter: the one-round-trip delete
// transaction, the outbox, migrations and connection pooling tuned for
// Lambda (and RDS Proxy).
package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PoolOptions configures NewPool.
type PoolOptions struct {
	// URL is a libpq-style connection string or postgres:// URL.
	URL string
	// MaxConns is the pool size: one per concurrent invoke the execution
	// environment may run (lambdacontext.MaxConcurrency(), 1 normally).
	MaxConns int32
	// MaxConnLifetime bounds a connection's age; IAM auth tokens live 15
	// minutes, so keep it under that when they are used. Zero means 10m.
	MaxConnLifetime time.Duration
	// BeforeConnect may rewrite the connection settings just before each new
	// connection, e.g. to set a fresh IAM auth token as the password.
	BeforeConnect func(context.Context, *pgx.ConnConfig) error
}

// NewPool builds a pool without connecting: connections are made on first
// use, so Lambda init never waits on the database.
//
// Settings that matter for latency and for RDS Proxy:
//   - default_query_exec_mode=exec: unnamed statements only, so RDS Proxy
//     never pins a session to a client because of prepared statements;
//   - no liveness ping on acquire: between Lambda invokes every connection
//     has sat idle for more than a second, and pgxpool would spend one extra
//     round trip per request on a ping. Instead the kernel's TCP state is
//     read as a connection is handed out, and one its peer closed is
//     replaced (usable, in conncheck.go);
//   - no startup parameter but application_name, which transaction-mode
//     poolers track per client: PgBouncer refuses a connection whose startup
//     packet sets anything beyond application_name, client_encoding,
//     DateStyle, TimeZone and standard_conforming_strings ("unsupported
//     startup parameter"), and a session setting would not follow the client
//     to the next server connection anyway. Settings belong in the
//     transaction that needs them (Store.Delete sets its timeouts there).
func NewPool(ctx context.Context, o PoolOptions) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse connection settings: %w", err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	cfg.ConnConfig.StatementCacheCapacity = 0
	cfg.ConnConfig.DescriptionCacheCapacity = 0
	if cfg.ConnConfig.ConnectTimeout == 0 || cfg.ConnConfig.ConnectTimeout > 3*time.Second {
		cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "thread-delete"
	}
	cfg.MaxConns = max(o.MaxConns, 1)
	cfg.MinConns = 0
	cfg.MaxConnLifetime = o.MaxConnLifetime
	if cfg.MaxConnLifetime == 0 {
		cfg.MaxConnLifetime = 10 * time.Minute
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = time.Minute
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	cfg.PrepareConn = usable // instead of the ping: see conncheck.go
	if o.BeforeConnect != nil {
		cfg.BeforeConnect = o.BeforeConnect
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}
