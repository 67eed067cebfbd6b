package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/testenv"
)

// TestMigrateIsSafeToRerun applies the migrations again (and again,
// concurrently) to a database that has them, as `make migrate` may be.
func TestMigrateIsSafeToRerun(t *testing.T) {
	url := testenv.Database(t) // migrated once already
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}
	seed.Exec(`INSERT INTO thread_delete.outbox (kind, payload) VALUES ('cache_repair', '{}')`)
	before := seed.Count(`SELECT count(*) FROM thread_delete.schema_migrations`)

	ctx := context.Background()
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			errs <- postgres.Migrate(ctx, conn)
		}()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if after := seed.Count(`SELECT count(*) FROM thread_delete.schema_migrations`); after != before || before == 0 {
		t.Fatalf("schema_migrations rows %d -> %d", before, after)
	}
	if seed.Count(`SELECT count(*) FROM thread_delete.outbox`) != 1 {
		t.Fatal("re-running the migrations lost outbox rows")
	}
}
