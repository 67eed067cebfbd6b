package redis_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// modes are the two code paths of Cache, both run here against a
// standalone server: one script over the whole work, and one script per key
// (what cluster mode does; TestCluster runs it against a real cluster).
var modes = []struct {
	name    string
	cluster bool
}{{"standalone", false}, {"per-key", true}}

func newCache(t *testing.T, url string, cluster bool) *redis.Cache {
	t.Helper()
	client, err := redis.NewClient(redis.Options{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return &redis.Cache{Client: client, Cluster: cluster}
}

// val returns the string value of key, "" when it is absent.
func val(t *testing.T, rdb goredis.Cmdable, key string) string {
	t.Helper()
	v, err := rdb.Get(context.Background(), key).Result()
	if errors.Is(err, goredis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

func exists(t *testing.T, rdb goredis.Cmdable, key string) bool {
	t.Helper()
	n, err := rdb.Exists(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

func set(t *testing.T, rdb goredis.Cmdable, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if err := rdb.Set(context.Background(), k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// listener is a real subscriber on the control channels of some agent
// runs, as Kortix's workers listen.
type listener struct {
	ps       *goredis.PubSub
	sentinel string
	// publishers publish on one server each: every server a stop signal
	// can be published on.
	publishers []goredis.Cmdable
}

// listen subscribes to the control channels of runs (and a sentinel
// channel of its own) through client, and returns once the server has
// confirmed every subscription.
func listen(t *testing.T, client goredis.UniversalClient, publishers []goredis.Cmdable, runs ...string) *listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := &listener{sentinel: "test:sentinel:" + testenv.NewUUID(), publishers: publishers}
	channels := []string{l.sentinel}
	for _, r := range runs {
		channels = append(channels, redis.ControlChannel(r))
	}
	l.ps = client.Subscribe(ctx, channels...)
	t.Cleanup(func() { l.ps.Close() })
	for range channels {
		msg, err := l.ps.Receive(ctx)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		if _, ok := msg.(*goredis.Subscription); !ok {
			t.Fatalf("subscribe: got %T before the confirmations", msg)
		}
	}
	return l
}

// received returns the messages that arrived since the last call, per run
// id. It publishes on the sentinel channel through every publisher and
// reads until each sentinel is back: a server delivers a subscriber's
// messages in the order they were published, and in a cluster each node's
// link to the subscriber's node is in order too, so whatever was published
// before has been delivered by then. No waiting on time.
func (l *listener) received(t *testing.T) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range l.publishers {
		if err := p.Publish(ctx, l.sentinel, "sentinel").Err(); err != nil {
			t.Fatalf("publish sentinel: %v", err)
		}
	}
	got := map[string][]string{}
	for sentinels := 0; sentinels < len(l.publishers); {
		msg, err := l.ps.ReceiveMessage(ctx)
		if err != nil {
			t.Fatalf("receive: %v (so far %v)", err, got)
		}
		if msg.Channel == l.sentinel {
			sentinels++
			continue
		}
		run := strings.TrimSuffix(strings.TrimPrefix(msg.Channel, "agent_run:"), ":control")
		got[run] = append(got[run], msg.Payload)
	}
	return got
}

// stopped is what received should return after runs were each told to
// stop once.
func stopped(runs ...string) map[string][]string {
	m := map[string][]string{}
	for _, r := range runs {
		m[r] = []string{redis.StopSignal}
	}
	return m
}

func TestApplyLowersCountersPerAccount(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			url, rdb := testenv.Redis(t)
			ctx := context.Background()
			// Keys name their account by letter ("thread_count:A"); each
			// case gets fresh ids for A and B.
			type counters map[string]string // key -> value, "" absent
			tests := []struct {
				name         string
				deltas       []threads.AccountDelta // AccountID "A" or "B"
				before, want counters
			}{
				{"one thread, counters present",
					[]threads.AccountDelta{{AccountID: "A", Threads: 1}},
					counters{"thread_count:A": "5", "project_count:A": "2"},
					counters{"thread_count:A": "4", "project_count:A": "2"}},
				{"last thread and project",
					[]threads.AccountDelta{{AccountID: "A", Threads: 1, Projects: 1}},
					counters{"thread_count:A": "5", "project_count:A": "2"},
					counters{"thread_count:A": "4", "project_count:A": "1"}},
				{"sub-agent threads count too",
					[]threads.AccountDelta{{AccountID: "A", Threads: 3, Projects: 1}},
					counters{"thread_count:A": "10", "project_count:A": "1"},
					counters{"thread_count:A": "7", "project_count:A": "0"}},
				{"two accounts in one work",
					[]threads.AccountDelta{{AccountID: "A", Threads: 2, Projects: 1}, {AccountID: "B", Threads: 1}},
					counters{"thread_count:A": "5", "project_count:A": "3", "thread_count:B": "4", "project_count:B": "1"},
					counters{"thread_count:A": "3", "project_count:A": "2", "thread_count:B": "3", "project_count:B": "1"}},
				{"absent counters stay absent",
					[]threads.AccountDelta{{AccountID: "A", Threads: 2, Projects: 1}, {AccountID: "B", Threads: 1}},
					counters{"thread_count:A": "", "project_count:A": "", "thread_count:B": "2"},
					counters{"thread_count:A": "", "project_count:A": "", "thread_count:B": "1", "project_count:B": ""}},
				{"never below zero",
					[]threads.AccountDelta{{AccountID: "A", Threads: 3, Projects: 1}},
					counters{"thread_count:A": "1", "project_count:A": "0"},
					counters{"thread_count:A": "0", "project_count:A": "0"}},
				{"a counter that is not a number is dropped for Kortix to rebuild",
					[]threads.AccountDelta{{AccountID: "A", Threads: 1, Projects: 1}},
					counters{"thread_count:A": "many", "project_count:A": "2"},
					counters{"thread_count:A": "", "project_count:A": "1"}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					cache := newCache(t, url, mode.cluster)
					ids := map[string]string{"A": testenv.NewUUID(), "B": testenv.NewUUID()}
					key := func(k string) string {
						name, letter, _ := strings.Cut(k, ":")
						return name + ":" + ids[letter]
					}
					work := threads.CacheWork{ID: testenv.NewUUID()}
					for _, d := range tc.deltas {
						d.AccountID = ids[d.AccountID]
						work.Accounts = append(work.Accounts, d)
						rdb.Set(ctx, "cache:account_state:"+d.AccountID, "{}", 0)
						for range d.Threads {
							id := testenv.NewUUID()
							work.ThreadIDs = append(work.ThreadIDs, id)
							rdb.Set(ctx, "message_history:"+id, "[]", 0)
						}
						for range d.Projects {
							id := testenv.NewUUID()
							work.ProjectIDs = append(work.ProjectIDs, id)
							rdb.Set(ctx, "project_meta:"+id, "{}", 0)
						}
					}
					for k, v := range tc.before {
						if v != "" {
							// Kortix's counters may expire; lowering one keeps its TTL.
							rdb.Set(ctx, key(k), v, time.Hour)
						}
					}
					other, otherThread, otherProject := testenv.NewUUID(), testenv.NewUUID(), testenv.NewUUID()
					set(t, rdb, map[string]string{
						"thread_count:" + other: "9", "project_count:" + other: "2", "cache:account_state:" + other: "{}",
						"message_history:" + otherThread: "[]", "project_meta:" + otherProject: "{}",
					})

					if err := cache.Apply(ctx, work); err != nil {
						t.Fatal(err)
					}
					for k, want := range tc.want {
						if got := val(t, rdb, key(k)); got != want {
							t.Errorf("%s = %q, want %q", k, got, want)
						}
						if want != "" {
							if ttl := rdb.TTL(ctx, key(k)).Val(); ttl <= 0 {
								t.Errorf("%s lost its TTL (%s)", k, ttl)
							}
						}
					}
					for _, a := range work.Accounts {
						if exists(t, rdb, "cache:account_state:"+a.AccountID) {
							t.Error("account state not deleted")
						}
					}
					for _, id := range work.ThreadIDs {
						if exists(t, rdb, "message_history:"+id) {
							t.Error("message_history not deleted")
						}
					}
					for _, id := range work.ProjectIDs {
						if exists(t, rdb, "project_meta:"+id) {
							t.Error("project_meta not deleted")
						}
					}
					if val(t, rdb, "thread_count:"+other) != "9" || val(t, rdb, "project_count:"+other) != "2" ||
						rdb.Exists(ctx, "cache:account_state:"+other, "message_history:"+otherThread, "project_meta:"+otherProject).Val() != 3 {
						t.Error("keys of another account, thread or project were touched")
					}
				})
			}
		})
	}
}

// Every agent run the delete found running is told to stop on its own
// control channel, exactly once however often the work is applied or
// repaired; nothing is published for any other run.
func TestApplyStopsRunningAgents(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			url, rdb := testenv.Redis(t)
			ctx := context.Background()
			cache := newCache(t, url, mode.cluster)
			run1, run2, finished := testenv.NewUUID(), testenv.NewUUID(), testenv.NewUUID()
			l := listen(t, rdb, []goredis.Cmdable{rdb}, run1, run2, finished)
			work := threads.CacheWork{ID: testenv.NewUUID(), ThreadIDs: []string{testenv.NewUUID()}, StopRuns: []string{run1, run2}}

			if err := cache.Apply(ctx, work); err != nil {
				t.Fatal(err)
			}
			if got, want := l.received(t), stopped(run1, run2); !maps.EqualFunc(got, want, slices.Equal) {
				t.Fatalf("after Apply the workers got %v, want %v", got, want)
			}
			if err := cache.Apply(ctx, work); err != nil {
				t.Fatal(err)
			}
			if errs := cache.Repair(ctx, []threads.CacheWork{work}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			if got := l.received(t); len(got) != 0 {
				t.Fatalf("a second Apply and a Repair published again: %v", got)
			}
		})
	}
}

// accountWork is a piece of work for two accounts (A: two threads and its
// project, B: one thread) with both accounts' counters and every key
// present, and one running agent; it returns the work and the keys.
func accountWork(t *testing.T, rdb goredis.Cmdable) (threads.CacheWork, map[string]string) {
	t.Helper()
	a, b := testenv.NewUUID(), testenv.NewUUID()
	w := threads.CacheWork{
		ID:         testenv.NewUUID(),
		Accounts:   []threads.AccountDelta{{AccountID: a, Threads: 2, Projects: 1}, {AccountID: b, Threads: 1}},
		ThreadIDs:  []string{testenv.NewUUID(), testenv.NewUUID(), testenv.NewUUID()},
		ProjectIDs: []string{testenv.NewUUID()},
		StopRuns:   []string{testenv.NewUUID()},
	}
	keys := map[string]string{
		"thread_count:" + a: "10", "project_count:" + a: "3",
		"thread_count:" + b: "4", "project_count:" + b: "2",
		"cache:account_state:" + a: "{}", "cache:account_state:" + b: "{}",
		"project_meta:" + w.ProjectIDs[0]: "{}",
	}
	for _, id := range w.ThreadIDs {
		keys["message_history:"+id] = "[]"
	}
	set(t, rdb, keys)
	return w, keys
}

// cachedLeft returns the cached (non-counter) keys of keys that are still
// present.
func cachedLeft(t *testing.T, rdb goredis.Cmdable, keys map[string]string) []string {
	t.Helper()
	var left []string
	for k := range keys {
		if !strings.HasSuffix(strings.SplitN(k, ":", 2)[0], "_count") && exists(t, rdb, k) {
			left = append(left, k)
		}
	}
	return left
}

func TestApplyAndRepairHappenOnce(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			url, rdb := testenv.Redis(t)
			ctx := context.Background()
			cache := newCache(t, url, mode.cluster)

			t.Run("apply twice lowers once", func(t *testing.T) {
				w, _ := accountWork(t, rdb)
				a, b := w.Accounts[0].AccountID, w.Accounts[1].AccountID
				for range 2 {
					if err := cache.Apply(ctx, w); err != nil {
						t.Fatal(err)
					}
				}
				if got := []string{val(t, rdb, "thread_count:"+a), val(t, rdb, "project_count:"+a), val(t, rdb, "thread_count:"+b), val(t, rdb, "project_count:"+b)}; !slices.Equal(got, []string{"8", "2", "3", "2"}) {
					t.Fatalf("counters %v, want [8 2 3 2]", got)
				}
			})

			t.Run("repair after apply changes nothing", func(t *testing.T) {
				w, _ := accountWork(t, rdb)
				a := w.Accounts[0].AccountID
				if err := cache.Apply(ctx, w); err != nil {
					t.Fatal(err)
				}
				// Meanwhile Kortix rebuilt the account state and counted a
				// new thread.
				set(t, rdb, map[string]string{"thread_count:" + a: "9", "cache:account_state:" + a: "{}"})
				if errs := cache.Repair(ctx, []threads.CacheWork{w}); errs[0] != nil {
					t.Fatal(errs[0])
				}
				if val(t, rdb, "thread_count:"+a) != "9" || val(t, rdb, "project_count:"+a) != "2" || !exists(t, rdb, "cache:account_state:"+a) {
					t.Fatal("a repair of applied work touched the account's keys")
				}
			})

			t.Run("repair without apply deletes the counters", func(t *testing.T) {
				run := testenv.NewUUID()
				l := listen(t, rdb, []goredis.Cmdable{rdb}, run)
				w, keys := accountWork(t, rdb)
				w.StopRuns = []string{run}
				other := testenv.NewUUID()
				set(t, rdb, map[string]string{"thread_count:" + other: "6"})
				if errs := cache.Repair(ctx, []threads.CacheWork{w}); errs[0] != nil {
					t.Fatal(errs[0])
				}
				// A lost 2 threads and 1 project, B 1 thread and no project.
				a, b := w.Accounts[0].AccountID, w.Accounts[1].AccountID
				for _, k := range []string{"thread_count:" + a, "project_count:" + a, "thread_count:" + b} {
					if exists(t, rdb, k) {
						t.Errorf("%s survived the repair (%q)", k, val(t, rdb, k))
					}
				}
				if val(t, rdb, "project_count:"+b) != "2" {
					t.Error("the project counter of an account that lost no project was touched")
				}
				if left := cachedLeft(t, rdb, keys); len(left) != 0 {
					t.Errorf("cached keys survived the repair: %v", left)
				}
				if got := l.received(t); !maps.EqualFunc(got, stopped(run), slices.Equal) {
					t.Errorf("workers got %v, want one STOP for %s", got, run)
				}
				if val(t, rdb, "thread_count:"+other) != "6" {
					t.Error("another account's counter was touched")
				}

				// Kortix rebuilds the counters from the database; a second
				// repair leaves them alone and publishes nothing.
				set(t, rdb, map[string]string{"thread_count:" + a: "8", "project_count:" + a: "2"})
				if errs := cache.Repair(ctx, []threads.CacheWork{w}); errs[0] != nil {
					t.Fatal(errs[0])
				}
				if val(t, rdb, "thread_count:"+a) != "8" || val(t, rdb, "project_count:"+a) != "2" {
					t.Fatal("a second repair deleted the rebuilt counters")
				}
				if got := l.received(t); len(got) != 0 {
					t.Fatalf("a second repair published again: %v", got)
				}
			})

			t.Run("a batch mixes applied and unapplied work", func(t *testing.T) {
				applied, _ := accountWork(t, rdb)
				if err := cache.Apply(ctx, applied); err != nil {
					t.Fatal(err)
				}
				pending1, keys1 := accountWork(t, rdb)
				pending2, keys2 := accountWork(t, rdb)
				errs := cache.Repair(ctx, []threads.CacheWork{pending1, applied, pending2})
				if len(errs) != 3 || errors.Join(errs...) != nil {
					t.Fatalf("errors %v", errs)
				}
				if a := applied.Accounts[0].AccountID; val(t, rdb, "thread_count:"+a) != "8" {
					t.Fatalf("applied work's counter %q, want 8 (lowered once, not deleted)", val(t, rdb, "thread_count:"+a))
				}
				for _, w := range []threads.CacheWork{pending1, pending2} {
					if a := w.Accounts[1].AccountID; exists(t, rdb, "thread_count:"+a) {
						t.Fatal("unapplied work's counter not deleted")
					}
				}
				if left := append(cachedLeft(t, rdb, keys1), cachedLeft(t, rdb, keys2)...); len(left) != 0 {
					t.Fatalf("cached keys survived: %v", left)
				}
			})
		})
	}
}

// A key of the wrong type makes its part of the work fail. The failure
// must not leave a marker behind that hides the rest of the work from the
// repair; in per-key mode the parts that were applied stay applied once.
func TestFailedPartIsRepaired(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			url, rdb := testenv.Redis(t)
			ctx := context.Background()
			cache := newCache(t, url, mode.cluster)
			run := testenv.NewUUID()
			l := listen(t, rdb, []goredis.Cmdable{rdb}, run)
			w, keys := accountWork(t, rdb)
			w.StopRuns = []string{run}
			a, b := w.Accounts[0].AccountID, w.Accounts[1].AccountID
			rdb.Del(ctx, "thread_count:"+a)
			rdb.HSet(ctx, "thread_count:"+a, "n", "10") // not a string: GET fails

			if err := cache.Apply(ctx, w); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
				t.Fatalf("Apply over a key of the wrong type: %v", err)
			}
			if errs := cache.Repair(ctx, []threads.CacheWork{w}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			if exists(t, rdb, "thread_count:"+a) {
				t.Error("the failed counter was not repaired")
			}
			if left := cachedLeft(t, rdb, keys); len(left) != 0 {
				t.Errorf("cached keys survived: %v", left)
			}
			if got := l.received(t); !maps.EqualFunc(got, stopped(run), slices.Equal) {
				t.Errorf("workers got %v, want one STOP for %s", got, run)
			}
			got := []string{val(t, rdb, "project_count:"+a), val(t, rdb, "thread_count:"+b), val(t, rdb, "project_count:"+b)}
			want := []string{"2", "3", "2"} // per key: lowered once inline, left alone by the repair
			if !mode.cluster {
				// One script: it stopped at the bad key, so the repair form
				// completes the whole work.
				// (B lost no project: its project_count is no part of it.)
				want = []string{"", "", "2"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("project_count:A, thread_count:B, project_count:B = %q, want %q", got, want)
			}
		})
	}
}

// Apply is one round trip in either mode, and so is Repair for a whole
// batch.
func TestOneRoundTrip(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			url, rdb := testenv.Redis(t)
			proxy := testenv.StartProxy(t, testenv.RedisAddr())
			cache := newCache(t, testenv.RedisViaAddr(url, proxy.Addr), mode.cluster)
			ctx := context.Background()
			// Connection setup is not counted: open the connection that
			// pipelines use (go-redis keeps them in a pool of their own).
			if _, err := cache.Client.Pipelined(ctx, func(p goredis.Pipeliner) error { return p.Ping(ctx).Err() }); err != nil {
				t.Fatal(err)
			}

			w, _ := accountWork(t, rdb)
			before := proxy.RoundTrips()
			if err := cache.Apply(ctx, w); err != nil {
				t.Fatal(err)
			}
			if n := proxy.RoundTrips() - before; n != 1 {
				t.Fatalf("Apply: %d round trips to Redis, want 1", n)
			}
			if v := val(t, rdb, "thread_count:"+w.Accounts[0].AccountID); v != "8" {
				t.Fatalf("counter %q, want 8", v)
			}

			batch := []threads.CacheWork{w}
			for range 4 {
				more, _ := accountWork(t, rdb)
				batch = append(batch, more)
			}
			before = proxy.RoundTrips()
			if errs := cache.Repair(ctx, batch); errors.Join(errs...) != nil {
				t.Fatal(errs)
			}
			if n := proxy.RoundTrips() - before; n != 1 {
				t.Fatalf("Repair of %d works: %d round trips to Redis, want 1", len(batch), n)
			}
			if exists(t, rdb, "thread_count:"+batch[4].Accounts[0].AccountID) {
				t.Fatal("counter not repaired")
			}
		})
	}
}

func TestNewClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"http://x", "redis://:abc", "::"} {
		if _, err := redis.NewClient(redis.Options{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
