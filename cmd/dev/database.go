package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kortix-ai/thread-delete/internal/localstack/devenv"
	"github.com/kortix-ai/thread-delete/internal/localstack/kortixschema"
	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// PrepareDatabase makes sure database name exists on the server of adminURL
// (dropping it first when reset), holds the Kortix tables (from the test
// fixture: production has them already) and the service's migrations, and
// returns its URL. The fixture is applied only to a database without
// public.threads, so data a developer added survives restarts.
func PrepareDatabase(ctx context.Context, adminURL, name string, reset bool) (string, error) {
	dbURL, err := devenv.WithDatabase(adminURL, name)
	if err != nil {
		return "", fmt.Errorf("database: TEST_DATABASE_URL: %w", err)
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("database: cannot reach PostgreSQL at %s (set TEST_DATABASE_URL to an admin URL): %w", devenv.Redact(adminURL), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{name}.Sanitize()
	if reset {
		if _, err := admin.Exec(ctx, `DROP DATABASE IF EXISTS `+ident+` WITH (FORCE)`); err != nil {
			return "", fmt.Errorf("database: drop %s: %w", name, err)
		}
	}
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	if !exists {
		if _, err := admin.Exec(ctx, `CREATE DATABASE `+ident); err != nil {
			var pgErr *pgconn.PgError
			// Another process created it meanwhile: fine.
			if !errors.As(err, &pgErr) || pgErr.Code != "42P04" {
				return "", fmt.Errorf("database: create %s: %w", name, err)
			}
		}
	}

	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", fmt.Errorf("database: connect to %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var hasThreads bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('public.threads') IS NOT NULL`).Scan(&hasThreads); err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	if !hasThreads {
		if _, err := conn.Exec(ctx, kortixschema.SQL); err != nil {
			return "", fmt.Errorf("database: applying the Kortix fixture to %s failed (a half-made database? re-create it with `make dev DEV_RESET=1`): %w", name, err)
		}
	}
	if err := postgres.Migrate(ctx, conn); err != nil {
		return "", fmt.Errorf("database: %w", err)
	}
	return dbURL, nil
}

// DropDatabase removes database name (used by tests).
func DropDatabase(ctx context.Context, adminURL, name string) error {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	_, err = admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
	return err
}
