package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// toleratedStartupParams are the run-time parameters a transaction-mode
// pooler accepts in a startup packet: the ones PgBouncer tracks per client
// (1.18 refuses any other with "unsupported startup parameter" unless told
// to ignore it), compared without regard to case as PgBouncer does.
// Supabase's pooler and RDS Proxy tolerate no more.
var toleratedStartupParams = map[string]bool{
	"application_name": true, "client_encoding": true, "datestyle": true,
	"timezone": true, "standard_conforming_strings": true,
}

// The pool's startup packet carries nothing a transaction-mode pooler
// refuses, whichever way the database is configured, and a real PgBouncer
// that ignores nothing else lets it in and passes application_name on.
func TestPoolStartupParametersAreWhatPoolersTolerate(t *testing.T) {
	ctx := context.Background()
	configs := []struct {
		name    string
		db      config.DB
		appName string
	}{
		{"URL", config.DB{URL: "postgres://app@db.invalid:6543/postgres?sslmode=require"}, "thread-delete"},
		{"URL naming the application", config.DB{URL: "postgres://app@db.invalid:6543/postgres?application_name=mine"}, "mine"},
		{"IAM auth", config.DB{IAMAuth: true, Host: "db.invalid", Port: 5432, User: "app", Name: "postgres", Region: "us-east-1"}, "thread-delete"},
		{"Secrets Manager", config.DB{SecretARN: "arn:aws:secretsmanager:us-east-1:000000000000:secret:db", Port: 5432}, "thread-delete"},
	}
	for _, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			pool, err := postgres.Open(ctx, c.db, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			params := pool.Config().ConnConfig.RuntimeParams
			for name := range params {
				if !toleratedStartupParams[strings.ToLower(name)] {
					t.Errorf("startup parameter %s=%q: a transaction-mode pooler refuses the connection", name, params[name])
				}
			}
			if params["application_name"] != c.appName {
				t.Errorf("application_name = %q, want %q", params["application_name"], c.appName)
			}
		})
	}

	t.Run("through PgBouncer", func(t *testing.T) {
		pool := testenv.ServicePool(t, testenv.ViaAddr(testenv.Database(t), testenv.StartPgBouncer(t, 1)), 1)
		var appName string
		if err := pool.QueryRow(ctx, `SELECT current_setting('application_name')`).Scan(&appName); err != nil {
			t.Fatalf("through PgBouncer: %v", err)
		}
		if appName != "thread-delete" {
			t.Fatalf("application_name on the server connection = %q", appName)
		}
	})
}

// Behind a transaction-mode pooler the delete's time limits travel inside
// its transaction: the session settings another client of the pooler left on
// the shared server connection (no lock timeout at all, a statement timeout
// shorter than the delete's lock timeout) decide nothing. A delete without
// a deadline that waits on a lock gives up with lock_timeout's error, changes
// nothing, and goes through once the lock is free.
func TestDeleteBehindPgBouncerCarriesItsLimitsInTheTransaction(t *testing.T) {
	bg := context.Background()
	url := testenv.Database(t)
	via := testenv.ViaAddr(url, testenv.StartPgBouncer(t, 1)) // one server connection for every client
	store := &postgres.Store{Pool: testenv.ServicePool(t, via, 1)}
	w := &world{Seeder: testenv.Seeder{TB: t, Pool: testenv.Pool(t, url)}, store: store}
	owner := w.PersonalAccount()
	p := w.Project(owner, w.Sandbox(owner, "sb-pooled"), "")
	th := w.Thread(owner, p, "")
	w.Content(th, 3, 1, 1)

	other := testenv.ServicePool(t, via, 1)
	for _, set := range []string{`SET lock_timeout = 0`, `SET statement_timeout = '3s'`} {
		if _, err := other.Exec(bg, set); err != nil {
			t.Fatal(err)
		}
	}
	var leaked string
	if err := store.Pool.QueryRow(bg, `SELECT current_setting('lock_timeout') || ' ' || current_setting('statement_timeout')`).Scan(&leaked); err != nil {
		t.Fatal(err)
	}
	if leaked != "0 3s" {
		t.Fatalf("the other client's session settings did not reach the shared server connection: %q", leaked)
	}

	before := w.Snapshot()
	holder, err := w.Pool.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback(bg) //nolint:errcheck
	if _, err := holder.Exec(bg, `SELECT 1 FROM public.projects WHERE project_id = $1 FOR KEY SHARE`, p); err != nil {
		t.Fatal(err)
	}

	// No deadline (so no statement_timeout of the delete's own); the test
	// still gives up on a delete that would wait forever.
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	stop := time.AfterFunc(20*time.Second, cancel)
	defer stop.Stop()
	_, err = store.Delete(ctx, threads.Request{ThreadIDs: []string{th}, Caller: user(owner)})
	var pgErr *pgconn.PgError
	if !errors.Is(err, threads.ErrUnavailable) || !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
		t.Fatalf("err = %v, want ErrUnavailable from lock_timeout (55P03)", err)
	}
	if after := w.Snapshot(); !mapsEqual(before, after) {
		t.Fatalf("a delete that gave up changed data:\nbefore %v\nafter  %v", before, after)
	}

	if err := holder.Rollback(bg); err != nil {
		t.Fatal(err)
	}
	del, err := store.Delete(bg, threads.Request{ThreadIDs: []string{th}, Caller: user(owner)})
	if err != nil || del.Outcome(th) != threads.OutcomeDeleted || len(del.Work.ProjectIDs) != 1 || w.threadExists(th) || w.projectExists(p) {
		t.Fatalf("delete after the lock was released: %+v, %v", del, err)
	}
}
