// Package testenv gives tests the local stack (package localstack) as
// testing.TB helpers: a fresh PostgreSQL database with the Kortix fixture
// and the service's migrations, a Redis database number of their own, the
// fauxqs SQS emulator, the Lambda runtime interface emulator, the Daytona
// stand-in, PgBouncer in front of PostgreSQL, and proxies that delay, count
// or cut connections. It starts what is missing; `make test` needs nothing
// else set. Each helper fails the test on error and undoes what it made
// when the test ends.
//
// Settings (all optional): TEST_DATABASE_URL (an admin URL of the server;
// default postgres://postgres@127.0.0.1:5432/postgres), TEST_REDIS_ADDR
// (default 127.0.0.1:6379), TEST_SQS_ENDPOINT (a running SQS emulator; one is
// started from node_modules otherwise).
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// RepoRoot returns the directory holding go.mod.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := localstack.RepoRoot()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return root
}

func adminURL() string { return localstack.AdminURL() }

var templateOnce sync.Once
var templateName string
var templateErr error

// template creates, once per fixture version, a database holding the
// Kortix fixture and the migrations; per-test databases are copied from it.
func template(ctx context.Context) (string, error) {
	templateOnce.Do(func() {
		sum := sha256.Sum256([]byte(localstack.KortixSchema + postgres.MigrationsDigest()))
		templateName = "tdtpl_" + hex.EncodeToString(sum[:6])
		admin, err := pgx.Connect(ctx, adminURL())
		if err != nil {
			templateErr = fmt.Errorf("testenv: PostgreSQL at %s: %w", localstack.Redact(adminURL()), err)
			return
		}
		defer admin.Close(ctx)
		if _, err = admin.Exec(ctx, `SELECT pg_advisory_lock(7246117002)`); err != nil {
			templateErr = err
			return
		}
		defer admin.Exec(ctx, `SELECT pg_advisory_unlock(7246117002)`) //nolint:errcheck
		var exists bool
		if err = admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, templateName).Scan(&exists); err != nil || exists {
			templateErr = err
			return
		}
		building := templateName + "_wip"
		if _, err = localstack.PrepareDatabase(ctx, adminURL(), building, true); err != nil {
			templateErr = err
			return
		}
		_, templateErr = admin.Exec(ctx, `ALTER DATABASE `+building+` RENAME TO `+templateName)
	})
	return templateName, templateErr
}

var dbSeq struct {
	sync.Mutex
	n int
}

// Database creates a fresh database with the fixture and migrations applied
// and returns its URL. It is dropped when the test ends.
func Database(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tpl, err := template(ctx)
	if err != nil {
		tb.Fatalf("testenv: template database: %v", err)
	}
	return createDatabase(ctx, tb, " TEMPLATE "+tpl)
}

// EmptyDatabase creates a database with nothing in it (no fixture, no
// migrations) and returns its URL. It is dropped when the test ends.
func EmptyDatabase(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return createDatabase(ctx, tb, "")
}

// createDatabase creates a uniquely named database (CREATE DATABASE name
// + suffix) that is dropped when the test ends.
func createDatabase(ctx context.Context, tb testing.TB, suffix string) string {
	tb.Helper()
	dbSeq.Lock()
	dbSeq.n++
	name := fmt.Sprintf("tdtest_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, dbSeq.n)
	dbSeq.Unlock()
	url, err := localstack.WithDatabase(adminURL(), name)
	if err != nil {
		tb.Fatalf("testenv: TEST_DATABASE_URL: %v", err)
	}

	admin, err := pgx.Connect(ctx, adminURL())
	if err != nil {
		tb.Fatalf("testenv: PostgreSQL: %v", err)
	}
	defer admin.Close(ctx)
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, `CREATE DATABASE `+name+suffix)
		// Another package may be copying the template at this instant.
		if err == nil || attempt == 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		tb.Fatalf("testenv: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		localstack.DropDatabase(ctx, adminURL(), name) //nolint:errcheck
	})
	return url
}

// RedisAddr returns the host:port of the test Redis server: TEST_REDIS_ADDR,
// or 127.0.0.1:6379. A test that puts something (a Proxy) in front of Redis
// must aim it here, or the code under test and the test's own client talk
// to different servers.
func RedisAddr() string {
	if a := os.Getenv("TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// RedisViaAddr returns the redis:// URL rewritten to connect through addr
// (host:port), e.g. a Proxy in front of RedisAddr, keeping the database
// number and credentials.
func RedisViaAddr(raw, addr string) string { return viaAddr(raw, addr) }

// Redis reserves a Redis database number (1-15) for the test, empties it and
// returns its redis:// URL and a client for assertions. The reservation is a
// key in database 0, so parallel test packages never share a database.
func Redis(tb testing.TB) (string, *redis.Client) {
	tb.Helper()
	ctx := context.Background()
	ctl := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: 0})
	tb.Cleanup(func() { ctl.Close() })
	deadline := time.Now().Add(60 * time.Second)
	token := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	for {
		for db := 1; db <= 15; db++ {
			key := fmt.Sprintf("testenv:redis-db:%d", db)
			ok, err := ctl.SetNX(ctx, key, token, 10*time.Minute).Result()
			if err != nil {
				tb.Fatalf("testenv: Redis at %s: %v", RedisAddr(), err)
			}
			if !ok {
				continue
			}
			client := redis.NewClient(&redis.Options{Addr: RedisAddr(), DB: db})
			if err := client.FlushDB(ctx).Err(); err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() {
				client.FlushDB(ctx)
				client.Close()
				if v, _ := ctl.Get(ctx, key).Result(); v == token {
					ctl.Del(ctx, key)
				}
			})
			return fmt.Sprintf("redis://%s/%d", RedisAddr(), db), client
		}
		if time.Now().After(deadline) {
			tb.Fatal("testenv: no free Redis database number")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := localstack.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}

// WaitFor polls cond until it holds and fails the test when it still does
// not after within. Tests wait for the condition they need (a backend
// waiting in pg_locks, a queue depth, a log line) instead of sleeping for a
// guessed time, which is too short on a loaded machine and wasted on an
// idle one. what names the condition in the failure message.
func WaitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("testenv: gave up after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ViaAddr returns the database URL rewritten to connect through addr
// (host:port), e.g. a Proxy.
func ViaAddr(url, addr string) string { return viaAddr(url, addr) }

func viaAddr(raw, addr string) string {
	u, err := localstack.WithHost(raw, addr)
	if err != nil {
		panic(err)
	}
	return u
}

// PostgresAddr returns the host:port of the test PostgreSQL server.
func PostgresAddr() string {
	cfg, err := pgx.ParseConfig(adminURL())
	if err != nil {
		panic(err)
	}
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
}
