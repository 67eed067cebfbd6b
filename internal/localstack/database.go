package localstack

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// KortixSchema creates the existing Kortix tables the service works on,
// with their trigger and indexes, in an empty database: a fixture, since
// production has them already.
//
//go:embed kortix_schema.sql
var KortixSchema string

// DefaultAdminURL is the local PostgreSQL server's admin URL.
const DefaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL is the PostgreSQL server's admin URL: TEST_DATABASE_URL (one
// setting for the tests and `make dev`) or DefaultAdminURL.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultAdminURL
}

// WithDatabase returns the PostgreSQL URL raw with its database replaced by
// name, keeping credentials, host and parameters.
func WithDatabase(raw, name string) (string, error) {
	u, err := parsePostgresURL(raw)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// WithHost returns the URL raw (postgres://, redis://, ...) rewritten to
// connect to hostport, e.g. a proxy in front of the server, keeping
// credentials, database and parameters.
func WithHost(raw, hostport string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("not a URL: %q", Redact(raw))
	}
	u.Host = hostport
	return u.String(), nil
}

func parsePostgresURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("not a postgres:// URL: %q", Redact(raw))
	}
	return u, nil
}

// Redact hides the password of a URL for printing.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// PrepareDatabase makes sure database name exists on the server of adminURL
// (dropping it first when reset), holds the Kortix tables and the
// service's migrations (ApplySchema), and returns its URL.
func PrepareDatabase(ctx context.Context, adminURL, name string, reset bool) (string, error) {
	dbURL, err := WithDatabase(adminURL, name)
	if err != nil {
		return "", fmt.Errorf("database: TEST_DATABASE_URL: %w", err)
	}
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("database: cannot reach PostgreSQL at %s (set TEST_DATABASE_URL to an admin URL): %w", Redact(adminURL), err)
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
	if err := ApplySchema(ctx, conn); err != nil {
		return "", fmt.Errorf("database %s: %w", name, err)
	}
	return dbURL, nil
}

// ApplySchema applies KortixSchema to a database without public.threads
// (so that data a developer added to the dev database survives restarts),
// then the service's migrations.
func ApplySchema(ctx context.Context, conn *pgx.Conn) error {
	var hasThreads bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('public.threads') IS NOT NULL`).Scan(&hasThreads); err != nil {
		return err
	}
	if !hasThreads {
		if _, err := conn.Exec(ctx, KortixSchema); err != nil {
			return fmt.Errorf("applying the Kortix fixture failed (a half-made database? re-create it; for the dev database: `make dev DEV_RESET=1`): %w", err)
		}
	}
	return postgres.Migrate(ctx, conn)
}

// DropDatabase removes database name from the server of adminURL.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	_, err = admin.Exec(ctx, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`)
	return err
}
