package postgres

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The service's schema changes come in two kinds, both embedded in the
// binary that `make migrate` runs:
//
//   - migrations/NNNN_name.sql run once each, in order, and are recorded with
//     their SHA-256 in thread_delete.schema_migrations. An applied migration
//     must never change: a deployed database would never see the edit while
//     tests (which build fresh databases) pass. Migrate refuses to run when
//     an applied file differs from what was applied; the fix goes into a new
//     migration.
//   - functions/*.sql hold the SQL functions the Lambdas call. Each file is
//     re-applied (CREATE OR REPLACE) whenever its checksum changes, and
//     recorded in thread_delete.schema_functions. Function names carry a
//     version (delete_threads_v1): a Lambda version still running during a
//     deploy keeps calling the function it was built with, so a change it
//     could not live with goes under a new name in a new file.
//
// Both run after the migrations, each file in its own transaction, all under
// one advisory lock, so concurrent migrators (two deploys, parallel test
// packages) apply everything once.
//
// Why not jackc/tern: it records versions but no checksums, so an edited
// applied migration would go unnoticed, and it has no notion of a
// re-appliable file; what is needed here is about a hundred lines.

//go:embed migrations/*.sql functions/*.sql
var schemaFiles embed.FS

// migrationLock is the advisory lock key that serialises concurrent
// migrators.
const migrationLock = 7_246_117_001

// schemaFile is one embedded SQL file.
type schemaFile struct {
	name string // file name without .sql: the version, or the function file
	body string
	sum  string // hex SHA-256 of body
}

func readSchemaFiles(fsys fs.FS, dir string) ([]schemaFile, error) {
	names, err := fs.Glob(fsys, dir+"/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	files := make([]schemaFile, 0, len(names))
	for _, n := range names {
		body, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		files = append(files, schemaFile{
			name: strings.TrimSuffix(path.Base(n), ".sql"),
			body: string(body),
			sum:  hex.EncodeToString(sum[:]),
		})
	}
	return files, nil
}

// ErrMigrationChanged is returned when an applied migration's file no
// longer matches what was applied.
type ErrMigrationChanged struct {
	Version, Applied, Now string // version; checksums recorded and of the file now
}

func (e *ErrMigrationChanged) Error() string {
	return fmt.Sprintf("migrate: migration %s was changed after it was applied (sha256 %s applied, %s now); "+
		"restore the file and put the change into a new migration", e.Version, short(e.Applied), short(e.Now))
}

func short(sum string) string { return sum[:min(12, len(sum))] }

// Migrate applies the migrations not applied yet and the function files
// that changed, and records them. Running it again is a no-op.
func Migrate(ctx context.Context, conn *pgx.Conn) error {
	return migrate(ctx, conn, schemaFiles)
}

// migrate is Migrate over the files of fsys (migrations/, functions/).
func migrate(ctx context.Context, conn *pgx.Conn, fsys fs.FS) error {
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock) //nolint:errcheck

	// The checksum column came after the first migrations were applied:
	// rows recorded before it get the checksum of the file as it is at the
	// first run that knows about checksums.
	if _, err := conn.Exec(ctx, `
		CREATE SCHEMA IF NOT EXISTS thread_delete;
		CREATE TABLE IF NOT EXISTS thread_delete.schema_migrations (
			version    text PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		);
		ALTER TABLE thread_delete.schema_migrations ADD COLUMN IF NOT EXISTS checksum text;
		CREATE TABLE IF NOT EXISTS thread_delete.schema_functions (
			file       text PRIMARY KEY,
			checksum   text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
		return fmt.Errorf("migrate: bookkeeping tables: %w", err)
	}

	migrations, err := readSchemaFiles(fsys, "migrations")
	if err != nil {
		return err
	}
	applied := map[string]*string{}
	rows, err := conn.Query(ctx, `SELECT version, checksum FROM thread_delete.schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrate: read applied migrations: %w", err)
	}
	for rows.Next() {
		var v string
		var sum *string
		if err := rows.Scan(&v, &sum); err != nil {
			return err
		}
		applied[v] = sum
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrate: read applied migrations: %w", err)
	}
	// Every applied file is checked before anything new runs.
	for _, m := range migrations {
		if sum, ok := applied[m.name]; ok && sum != nil && *sum != m.sum {
			return &ErrMigrationChanged{Version: m.name, Applied: *sum, Now: m.sum}
		}
	}
	for _, m := range migrations {
		sum, done := applied[m.name]
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			switch {
			case done && sum == nil:
				_, err := tx.Exec(ctx, `UPDATE thread_delete.schema_migrations SET checksum = $2 WHERE version = $1`, m.name, m.sum)
				return err
			case done:
				return nil
			}
			if _, err := tx.Exec(ctx, m.body); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO thread_delete.schema_migrations (version, checksum) VALUES ($1, $2)`, m.name, m.sum)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", m.name, err)
		}
	}

	functions, err := readSchemaFiles(fsys, "functions")
	if err != nil {
		return err
	}
	for _, f := range functions {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			var same bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM thread_delete.schema_functions WHERE file = $1 AND checksum = $2)`,
				f.name, f.sum).Scan(&same); err != nil || same {
				return err
			}
			if _, err := tx.Exec(ctx, f.body); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `
				INSERT INTO thread_delete.schema_functions (file, checksum) VALUES ($1, $2)
				ON CONFLICT (file) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()`, f.name, f.sum)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: functions/%s: %w", f.name, err)
		}
	}
	return nil
}

// MigrationsDigest identifies the schema files (names and text), so that
// caches of migrated databases know when they are stale.
func MigrationsDigest() string {
	var b strings.Builder
	for _, dir := range []string{"migrations", "functions"} {
		files, _ := readSchemaFiles(schemaFiles, dir)
		for _, f := range files {
			b.WriteString(dir + "/" + f.name + ":" + f.sum + "\n")
		}
	}
	return b.String()
}
