package redis_test

import (
	"context"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// TestTLS talks rediss:// to a TLS-only server, as to ElastiCache with
// in-transit encryption. The server's self-signed CA is trusted through
// SSL_CERT_FILE, as Go reads the system roots (only once per process, so
// nothing in this package may use TLS before this test).
func TestTLS(t *testing.T) {
	url, ca := testenv.RedisTLS(t)
	t.Setenv("SSL_CERT_FILE", ca)
	client, err := redis.NewClient(redis.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()
	account, thread := testenv.NewUUID(), testenv.NewUUID()
	if err := client.Set(ctx, "thread_count:"+account, 2, 0).Err(); err != nil {
		t.Fatalf("TLS connection: %v", err)
	}
	work := threads.CacheWork{ID: testenv.NewUUID(), Accounts: []threads.AccountDelta{{AccountID: account, Threads: 1}}, ThreadIDs: []string{thread}}
	if err := (&redis.Cache{Client: client}).Apply(ctx, work); err != nil {
		t.Fatal(err)
	}
	if v := client.Get(ctx, "thread_count:"+account).Val(); v != "1" {
		t.Fatalf("thread_count = %q, want 1", v)
	}

	// Plain redis:// to a TLS-only port fails (and is reported, not hung).
	plain, _ := redis.NewClient(redis.Options{URL: "redis" + url[len("rediss"):]})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("plain text accepted by a TLS-only server")
	}
}

// TestCluster runs the Redis work against a real three-node cluster: the
// keys of one delete live in different slots, so anything but per-key
// scripts would fail with CROSSSLOT.
func TestCluster(t *testing.T) {
	seed := testenv.RedisCluster(t)
	client, err := redis.NewClient(redis.Options{URL: "redis://" + seed, Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	cc, ok := client.(*goredis.ClusterClient)
	if !ok {
		t.Fatalf("REDIS_CLUSTER=true built a %T", client)
	}
	ctx := context.Background()
	masters := mastersOf(t, cc)
	cache := &redis.Cache{Client: client, Cluster: true}

	t.Run("apply and repair", func(t *testing.T) {
		w, keys := accountWork(t, client)
		run2, finished := testenv.NewUUID(), testenv.NewUUID()
		w.StopRuns = append(w.StopRuns, run2)
		l := listen(t, client, masters, w.StopRuns[0], run2, finished)
		a, b := w.Accounts[0].AccountID, w.Accounts[1].AccountID

		if err := cache.Apply(ctx, w); err != nil {
			t.Fatalf("cluster apply: %v", err)
		}
		counters := func() []string {
			return []string{val(t, client, "thread_count:"+a), val(t, client, "project_count:"+a), val(t, client, "thread_count:"+b), val(t, client, "project_count:"+b)}
		}
		if got := counters(); !slices.Equal(got, []string{"8", "2", "3", "2"}) {
			t.Fatalf("counters %v, want [8 2 3 2]", got)
		}
		if left := cachedLeft(t, client, keys); len(left) != 0 {
			t.Fatalf("cache keys survived: %v", left)
		}
		if got := l.received(t); !maps.EqualFunc(got, stopped(w.StopRuns...), slices.Equal) {
			t.Fatalf("workers got %v, want one STOP for each of %v", got, w.StopRuns)
		}

		if err := cache.Apply(ctx, w); err != nil {
			t.Fatal(err)
		}
		if errs := cache.Repair(ctx, []threads.CacheWork{w}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		if got := counters(); !slices.Equal(got, []string{"8", "2", "3", "2"}) {
			t.Fatalf("after a second Apply and a Repair: counters %v, want [8 2 3 2]", got)
		}
		if got := l.received(t); len(got) != 0 {
			t.Fatalf("published again: %v", got)
		}

		// The standalone script over the same keys is refused by a
		// cluster: this is why cluster mode must use per-key scripts.
		w.ID = testenv.NewUUID()
		if err := (&redis.Cache{Client: client}).Apply(ctx, w); err == nil {
			t.Fatal("multi-key script accepted by a cluster; the per-key path would be unnecessary")
		}
	})

	// One shard fails or answers late while the work is applied inline;
	// the repair then completes that shard's part and never lowers again a
	// counter of a healthy shard (a replayed decrement would leave it too
	// low until Kortix happens to rebuild it).
	t.Run("a shard that fails", func(t *testing.T) {
		p := placeWork(t, cc, client)
		hole := testenv.StartBlackhole(t, p.victim)
		flaky := clusterVia(t, p.healthy, p.victim, hole.Addr)
		hole.Swallow(true)

		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := (&redis.Cache{Client: flaky, Cluster: true}).Apply(actx, p.work); err == nil {
			t.Fatal("Apply succeeded with a shard swallowing its commands")
		}
		// The swallowed commands never run: only the healthy shards' part
		// is done.
		p.check(t, "after the failed Apply", []string{"9", "2", "4"}, false, p.healthyRun)

		hole.Swallow(false)
		if errs := cache.Repair(ctx, []threads.CacheWork{p.work}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		p.check(t, "after the repair", []string{"9", "2", ""}, true, p.victimRun)
	})

	t.Run("a shard that answers late", func(t *testing.T) {
		p := placeWork(t, cc, client)
		proxy := testenv.StartProxy(t, p.victim)
		slow := clusterVia(t, p.healthy, p.victim, proxy.Addr)
		proxy.SetDelay(time.Second) // longer than the client waits

		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := (&redis.Cache{Client: slow, Cluster: true}).Apply(actx, p.work); err == nil {
			t.Fatal("Apply succeeded although a shard answered after the timeout")
		}
		// The late shard runs its scripts after the client gave up on
		// them; wait for that (its counter going down) before repairing.
		testenv.WaitFor(t, 10*time.Second, "the late shard to run its part", func() bool {
			return val(t, client, p.victimCounter) == "3"
		})
		proxy.SetDelay(0)
		if errs := cache.Repair(ctx, []threads.CacheWork{p.work}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		// Each part happened exactly once, lowered inline, late or not.
		p.check(t, "after the repair", []string{"9", "2", "3"}, true, p.healthyRun, p.victimRun)
	})
}

// mastersOf returns a client for each master of the cluster, for
// publishing on every node.
func mastersOf(t *testing.T, cc *goredis.ClusterClient) []goredis.Cmdable {
	t.Helper()
	var (
		mu      sync.Mutex
		masters []goredis.Cmdable
	)
	err := cc.ForEachMaster(context.Background(), func(_ context.Context, c *goredis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		masters = append(masters, c)
		return nil
	})
	if err != nil || len(masters) != 3 {
		t.Fatalf("%d masters: %v", len(masters), err)
	}
	return masters
}

// clusterVia is a cluster client that reaches node victim through addr
// (a proxy) and every other node directly, with connections to every
// node already open.
func clusterVia(t *testing.T, seed, victim, addr string) *goredis.ClusterClient {
	t.Helper()
	c := goredis.NewClusterClient(&goredis.ClusterOptions{
		Addrs: []string{seed},
		Dialer: func(ctx context.Context, network, a string) (net.Conn, error) {
			if a == victim {
				a = addr
			}
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		},
		DialTimeout:           300 * time.Millisecond,
		ReadTimeout:           300 * time.Millisecond,
		WriteTimeout:          300 * time.Millisecond,
		ContextTimeoutEnabled: true,
		MaxRetries:            1,
	})
	t.Cleanup(func() { c.Close() })
	if err := c.ForEachMaster(context.Background(), func(ctx context.Context, n *goredis.Client) error {
		return n.Ping(ctx).Err()
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// placed is a piece of work whose keys are placed on purpose: the victim
// node holds account B's thread counter, one thread's history and one
// run's stop marker; the other nodes hold everything of account A, the
// other thread's history and the other run's marker.
type placed struct {
	work            threads.CacheWork
	victim, healthy string // node addresses
	victimCounter   string // thread_count of account B
	healthyRun      string
	victimRun       string
	onVictim        func(key string) bool
	client          goredis.UniversalClient
	listener        *listener
}

// placeWork seeds a placed piece of work (A: 10 threads, 3 projects, loses
// 1 and 1; B: 4 threads, loses 1) and subscribes to its runs.
func placeWork(t *testing.T, cc *goredis.ClusterClient, client goredis.UniversalClient) *placed {
	t.Helper()
	ctx := context.Background()
	nodeOf := func(key string) string {
		c, err := cc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return c.Options().Addr
	}
	// pick draws ids until ok accepts one, so the placement is always the
	// one the test needs (each draw has a one-in-three chance or better).
	pick := func(ok func(id string) bool) string {
		for range 1000 {
			if id := testenv.NewUUID(); ok(id) {
				return id
			}
		}
		t.Fatal("no id with the wanted placement in 1000 draws")
		return ""
	}
	p := &placed{client: client}
	victimThread := testenv.NewUUID()
	p.victim = nodeOf("message_history:" + victimThread)
	onVictim := func(key string) bool { return nodeOf(key) == p.victim }
	p.onVictim = onVictim
	a := pick(func(id string) bool { return !onVictim("thread_count:"+id) && !onVictim("project_count:"+id) })
	b := pick(func(id string) bool { return onVictim("thread_count:" + id) })
	healthyThread := pick(func(id string) bool { return !onVictim("message_history:" + id) })
	p.healthyRun = pick(func(id string) bool { return !onVictim(redis.ControlChannel(id)) })
	p.victimRun = pick(func(id string) bool { return onVictim(redis.ControlChannel(id)) })
	p.healthy = nodeOf("thread_count:" + a)
	p.victimCounter = "thread_count:" + b
	project := testenv.NewUUID()
	p.work = threads.CacheWork{
		ID:         testenv.NewUUID(),
		Accounts:   []threads.AccountDelta{{AccountID: a, Threads: 1, Projects: 1}, {AccountID: b, Threads: 1}},
		ThreadIDs:  []string{victimThread, healthyThread},
		ProjectIDs: []string{project},
		StopRuns:   []string{p.healthyRun, p.victimRun},
	}
	set(t, client, map[string]string{
		"thread_count:" + a: "10", "project_count:" + a: "3", p.victimCounter: "4",
		"cache:account_state:" + a: "{}", "cache:account_state:" + b: "{}",
		"message_history:" + victimThread: "[]", "message_history:" + healthyThread: "[]", "project_meta:" + project: "{}",
	})
	p.listener = listen(t, client, mastersOf(t, cc), p.healthyRun, p.victimRun)
	return p
}

// check asserts the counters (thread_count:A, project_count:A,
// thread_count:B; "" absent), that the cached keys are gone (with
// victimDone) or gone except those on the victim, and that exactly runs
// were told to stop since the last check.
func (p *placed) check(t *testing.T, when string, counters []string, victimDone bool, runs ...string) {
	t.Helper()
	a := p.work.Accounts[0].AccountID
	got := []string{val(t, p.client, "thread_count:"+a), val(t, p.client, "project_count:"+a), val(t, p.client, p.victimCounter)}
	if !slices.Equal(got, counters) {
		t.Errorf("%s: thread_count:A, project_count:A, thread_count:B = %q, want %q", when, got, counters)
	}
	cached := []string{"project_meta:" + p.work.ProjectIDs[0]}
	for _, d := range p.work.Accounts {
		cached = append(cached, "cache:account_state:"+d.AccountID)
	}
	for _, id := range p.work.ThreadIDs {
		cached = append(cached, "message_history:"+id)
	}
	for _, k := range cached {
		if want := !victimDone && p.onVictim(k); exists(t, p.client, k) != want {
			t.Errorf("%s: %s present = %v, want %v", when, k, !want, want)
		}
	}
	if got := p.listener.received(t); !maps.EqualFunc(got, stopped(runs...), slices.Equal) {
		t.Errorf("%s: workers got %v, want one STOP for each of %v", when, got, runs)
	}
}
