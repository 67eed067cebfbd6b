package bench

import (
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/postgres"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// env is the backing services of one benchmark: a fresh database with the
// Kortix fixture, a Redis database number and an SQS queue (fauxqs), each
// also reachable through a testenv.Proxy that counts round trips and adds a
// fixed delay to each, the way a Lambda reaches RDS, ElastiCache and SQS in
// another availability zone. Seeding and checks use the direct connections
// (the embedded Seeder and rdb), so they never show in the proxies' counts.
type env struct {
	tb testing.TB
	testenv.Seeder
	rdb *goredis.Client

	dbURL, redisURL, sqsURL, queueURL string
	pgProxy, redisProxy, sqsProxy     *testenv.Proxy

	bulkSeeder *testenv.Seeder // see bulk
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	dbURL := testenv.Database(tb)
	redisURL, rdb := testenv.Redis(tb)
	sqsURL := testenv.SQS(tb)
	queueURL, _ := testenv.Queue(tb, sqsURL, 30*time.Second, 0)
	return &env{
		tb:         tb,
		Seeder:     testenv.Seeder{TB: tb, Pool: testenv.Pool(tb, dbURL)},
		rdb:        rdb,
		dbURL:      dbURL,
		redisURL:   redisURL,
		sqsURL:     sqsURL,
		queueURL:   queueURL,
		pgProxy:    testenv.StartProxy(tb, testenv.PostgresAddr()),
		redisProxy: testenv.StartProxy(tb, hostOf(tb, redisURL)),
		sqsProxy:   testenv.StartProxy(tb, hostOf(tb, sqsURL)),
	}
}

// route says how a client reaches a service.
type route int

const (
	viaProxy route = iota // through the counting, delaying proxy
	direct                // straight to the service on loopback
)

// setDelay adds d to every round trip through any of the three proxies.
func (e *env) setDelay(d time.Duration) {
	e.pgProxy.SetDelay(d)
	e.redisProxy.SetDelay(d)
	e.sqsProxy.SetDelay(d)
}

// trips is a reading of the three proxies' round-trip counters.
type trips struct{ pg, redis, sqs int64 }

func (e *env) trips() trips {
	return trips{e.pgProxy.RoundTrips(), e.redisProxy.RoundTrips(), e.sqsProxy.RoundTrips()}
}

func (t trips) since(before trips) trips {
	return trips{t.pg - before.pg, t.redis - before.redis, t.sqs - before.sqs}
}

// pool opens a pool of one connection with the service's own settings
// (exec mode, no ping on acquire), as each function instance has.
func (e *env) pool(r route) *pgxpool.Pool {
	u := e.dbURL
	if r == viaProxy {
		u = testenv.ViaAddr(e.dbURL, e.pgProxy.Addr)
	}
	return testenv.ServicePool(e.tb, u, 1)
}

// redisClient is a client with the service's settings (redis.NewClient).
func (e *env) redisClient(r route) goredis.UniversalClient {
	u := e.redisURL
	if r == viaProxy {
		u = withHost(e.tb, e.redisURL, e.redisProxy.Addr)
	}
	c, err := redis.NewClient(redis.Options{URL: u})
	if err != nil {
		e.tb.Fatal(err)
	}
	e.tb.Cleanup(func() { c.Close() })
	return c
}

// publisher sends teardowns to the benchmark's queue.
func (e *env) publisher(r route) *sqs.Publisher {
	endpoint := e.sqsURL
	if r == viaProxy {
		endpoint = "http://" + e.sqsProxy.Addr
	}
	return &sqs.Publisher{Client: testenv.SQSClient(endpoint), QueueURL: e.queueURL}
}

// deleter is the delete-thread function's domain service, wired as
// app.DeleteThread wires it: a pool of one connection, the Redis cache and
// the SQS publisher.
func (e *env) deleter(r route) *threads.Deleter {
	return &threads.Deleter{
		Store: &postgres.Store{Pool: e.pool(r)},
		Cache: &redis.Cache{Client: e.redisClient(r)},
		Queue: e.publisher(r),
	}
}

// remove deletes thread as its owner through d, as one invoke with the
// Lambda's 10 s budget, and fails the benchmark unless the thread and all
// the follow-up work are done: a delete whose Redis or SQS step failed would
// be measuring a fault path.
func (e *env) remove(d *threads.Deleter, owner, thread string) (time.Duration, threads.Result) {
	e.tb.Helper()
	return e.removeWithin(d, owner, thread, 10*time.Second)
}

func hostOf(tb testing.TB, raw string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u.Host
}

func withHost(tb testing.TB, raw, host string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	u.Host = host
	return u.String()
}
