package postgres_test

import (
	"context"
	"errors"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// migrateAll runs n migrators at once on url over fsys and returns their
// errors.
func migrateAll(t *testing.T, url string, n int, run func(context.Context, *pgx.Conn) error) []error {
	t.Helper()
	ctx := context.Background()
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			<-start
			errs <- run(ctx, conn)
		}()
	}
	close(start)
	out := make([]error, n)
	for i := range out {
		out[i] = <-errs
	}
	return out
}

func over(fsys fstest.MapFS) func(context.Context, *pgx.Conn) error {
	return func(ctx context.Context, c *pgx.Conn) error { return postgres.MigrateFS(ctx, c, fsys) }
}

func file(body string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(body)} }

// TestMigrateIsSafeToRerun applies the real migrations again, three at
// once, to a database that has them, as `make migrate` may be run.
func TestMigrateIsSafeToRerun(t *testing.T) {
	url := testenv.Database(t) // migrated once already
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}
	seed.Exec(`INSERT INTO thread_delete.outbox (kind, payload) VALUES ('cache_repair', '{}')`)
	before := seed.Count(`SELECT count(*) FROM thread_delete.schema_migrations`)
	functions := seed.Count(`SELECT count(*) FROM thread_delete.schema_functions`)

	for _, err := range migrateAll(t, url, 3, postgres.Migrate) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if after := seed.Count(`SELECT count(*) FROM thread_delete.schema_migrations WHERE checksum IS NOT NULL`); after != before || before == 0 {
		t.Fatalf("schema_migrations rows with checksums %d -> %d", before, after)
	}
	if functions == 0 || seed.Count(`SELECT count(*) FROM thread_delete.schema_functions`) != functions {
		t.Fatal("function files not recorded once each")
	}
	if seed.Count(`SELECT count(*) FROM thread_delete.outbox`) != 1 {
		t.Fatal("re-running the migrations lost outbox rows")
	}
}

// Two migrators on an empty database at once: everything is applied
// exactly once, and neither fails.
func TestMigrateConcurrentlyFromScratch(t *testing.T) {
	url := testenv.EmptyDatabase(t)
	fsys := fstest.MapFS{
		"migrations/0001_a.sql":   file(`CREATE TABLE public.a (id int); INSERT INTO public.a VALUES (1);`),
		"migrations/0002_b.sql":   file(`INSERT INTO public.a VALUES (2);`),
		"functions/answer_v1.sql": file(`CREATE OR REPLACE FUNCTION public.answer_v1() RETURNS int LANGUAGE sql AS 'SELECT 42'`),
	}
	for _, err := range migrateAll(t, url, 2, over(fsys)) {
		if err != nil {
			t.Fatal(err)
		}
	}
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}
	if n := seed.Count(`SELECT count(*) FROM public.a`); n != 2 {
		t.Fatalf("%d rows, want each migration applied once (2)", n)
	}
	if n := seed.Count(`SELECT public.answer_v1()`); n != 42 {
		t.Fatalf("answer_v1() = %d", n)
	}
}

// An applied migration whose file changed stops the run with an error that
// names it, before anything else is applied.
func TestMigrateRefusesAnEditedMigration(t *testing.T) {
	url := testenv.EmptyDatabase(t)
	fsys := fstest.MapFS{"migrations/0001_a.sql": file(`CREATE TABLE public.a (id int);`)}
	if err := over(fsys)(context.Background(), connect(t, url)); err != nil {
		t.Fatal(err)
	}
	fsys["migrations/0001_a.sql"] = file(`CREATE TABLE public.a (id bigint);`)
	fsys["migrations/0002_b.sql"] = file(`CREATE TABLE public.b (id int);`)
	err := over(fsys)(context.Background(), connect(t, url))
	var changed *postgres.ErrMigrationChanged
	if !errors.As(err, &changed) || changed.Version != "0001_a" {
		t.Fatalf("err = %v, want ErrMigrationChanged for 0001_a", err)
	}
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}
	if seed.Count(`SELECT count(*) FROM pg_tables WHERE tablename = 'b'`) != 0 {
		t.Fatal("a later migration ran although an applied one had changed")
	}
}

// A database migrated before checksums were recorded gets the checksums of
// its files on the first run, and is held to them from then on.
func TestMigrateRecordsChecksumsOfOlderDatabases(t *testing.T) {
	url := testenv.EmptyDatabase(t)
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}
	seed.Exec(`CREATE SCHEMA thread_delete;
		CREATE TABLE thread_delete.schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
		CREATE TABLE public.a (id int);
		INSERT INTO thread_delete.schema_migrations (version) VALUES ('0001_a')`)
	fsys := fstest.MapFS{"migrations/0001_a.sql": file(`CREATE TABLE public.a (id int);`)}
	if err := over(fsys)(context.Background(), connect(t, url)); err != nil {
		t.Fatalf("an older database: %v", err)
	}
	if seed.Count(`SELECT count(*) FROM thread_delete.schema_migrations WHERE checksum IS NOT NULL`) != 1 {
		t.Fatal("checksum not recorded")
	}
	fsys["migrations/0001_a.sql"] = file(`CREATE TABLE public.a (id bigint);`)
	var changed *postgres.ErrMigrationChanged
	if err := over(fsys)(context.Background(), connect(t, url)); !errors.As(err, &changed) {
		t.Fatalf("err = %v, want ErrMigrationChanged", err)
	}
}

// A function file is re-applied when it changes, and only then; a running
// version's function under the old name stays callable while a new name
// is added.
func TestMigrateReappliesChangedFunctionFiles(t *testing.T) {
	url := testenv.EmptyDatabase(t)
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}
	fsys := fstest.MapFS{"functions/answer_v1.sql": file(`CREATE OR REPLACE FUNCTION public.answer_v1() RETURNS int LANGUAGE sql AS 'SELECT 1'`)}
	run := func() {
		t.Helper()
		if err := over(fsys)(context.Background(), connect(t, url)); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if seed.Count(`SELECT public.answer_v1()`) != 1 {
		t.Fatal("function not created")
	}
	// Unchanged: not applied again (a hand-made change survives).
	seed.Exec(`CREATE OR REPLACE FUNCTION public.answer_v1() RETURNS int LANGUAGE sql AS 'SELECT 7'`)
	run()
	if seed.Count(`SELECT public.answer_v1()`) != 7 {
		t.Fatal("an unchanged function file was applied again")
	}
	// Changed: applied again.
	fsys["functions/answer_v1.sql"] = file(`CREATE OR REPLACE FUNCTION public.answer_v1() RETURNS int LANGUAGE sql AS 'SELECT 2'`)
	fsys["functions/answer_v2.sql"] = file(`CREATE OR REPLACE FUNCTION public.answer_v2(x int) RETURNS int LANGUAGE sql AS 'SELECT x'`)
	run()
	if seed.Count(`SELECT public.answer_v1()`) != 2 || seed.Count(`SELECT public.answer_v2(3)`) != 3 {
		t.Fatal("changed or new function files not applied")
	}
}

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}
