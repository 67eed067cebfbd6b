package redis_test

import (
	"context"
	"errors"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/testenv"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

func TestInvalidate(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		mode := map[bool]string{false: "standalone", true: "per-key"}[cluster]
		t.Run(mode, func(t *testing.T) {
			url, rdb := testenv.Redis(t)
			ctx := context.Background()
			tests := []struct {
				name           string
				threads        int
				projectDeleted bool
				before         map[string]string // counter -> value ("" = absent)
				want           map[string]string
			}{
				{"one thread, counters present", 1, false,
					map[string]string{"thread_count": "5", "project_count": "2"},
					map[string]string{"thread_count": "4", "project_count": "2"}},
				{"last thread and project", 1, true,
					map[string]string{"thread_count": "5", "project_count": "2"},
					map[string]string{"thread_count": "4", "project_count": "1"}},
				{"sub-agent threads count too", 3, true,
					map[string]string{"thread_count": "10", "project_count": "1"},
					map[string]string{"thread_count": "7", "project_count": "0"}},
				{"absent counters stay absent", 2, true,
					map[string]string{"thread_count": "", "project_count": ""},
					map[string]string{"thread_count": "", "project_count": ""}},
				{"never below zero", 3, true,
					map[string]string{"thread_count": "1", "project_count": "0"},
					map[string]string{"thread_count": "0", "project_count": "0"}},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					client, err := redis.NewClient(redis.Options{URL: url})
					if err != nil {
						t.Fatal(err)
					}
					defer client.Close()
					cache := &redis.Cache{Client: client, Cluster: cluster}
					account, other, project := testenv.NewUUID(), testenv.NewUUID(), testenv.NewUUID()
					ids := make([]string, tc.threads)
					for i := range ids {
						ids[i] = testenv.NewUUID()
						rdb.Set(ctx, "message_history:"+ids[i], "[]", 0)
					}
					for name, v := range tc.before {
						if v != "" {
							rdb.Set(ctx, name+":"+account, v, 0)
						}
					}
					rdb.Set(ctx, "thread_count:"+other, "9", 0)
					rdb.Set(ctx, "cache:account_state:"+account, "{}", 0)
					rdb.Set(ctx, "cache:account_state:"+other, "{}", 0)
					rdb.Set(ctx, "project_meta:"+project, "{}", 0)

					inv := threads.Invalidation{Key: ids[0], AccountID: account, ProjectID: project, ThreadIDs: ids, ProjectDeleted: tc.projectDeleted}
					if err := cache.Invalidate(ctx, inv); err != nil {
						t.Fatal(err)
					}
					for name, want := range tc.want {
						got, err := rdb.Get(ctx, name+":"+account).Result()
						if errors.Is(err, goredis.Nil) {
							got = ""
						}
						if got != want {
							t.Errorf("%s = %q, want %q", name, got, want)
						}
					}
					for _, id := range ids {
						if rdb.Exists(ctx, "message_history:"+id).Val() != 0 {
							t.Error("message_history not deleted")
						}
					}
					if rdb.Exists(ctx, "cache:account_state:"+account).Val() != 0 {
						t.Error("account state not deleted")
					}
					if got := rdb.Exists(ctx, "project_meta:"+project).Val(); (got == 0) != tc.projectDeleted {
						t.Errorf("project_meta exists=%d with project deleted=%v", got, tc.projectDeleted)
					}
					if rdb.Get(ctx, "thread_count:"+other).Val() != "9" || rdb.Exists(ctx, "cache:account_state:"+other).Val() != 1 {
						t.Error("another account's keys were touched")
					}
				})
			}
		})
	}
}

func TestInvalidateTwiceIsHarmlessOnStandalone(t *testing.T) {
	url, rdb := testenv.Redis(t)
	ctx := context.Background()
	client, _ := redis.NewClient(redis.Options{URL: url})
	defer client.Close()
	cache := &redis.Cache{Client: client}
	account, thread := testenv.NewUUID(), testenv.NewUUID()
	rdb.Set(ctx, "thread_count:"+account, "5", 0)
	inv := threads.Invalidation{Key: thread, AccountID: account, ThreadIDs: []string{thread}}
	for i := 0; i < 3; i++ {
		if err := cache.Invalidate(ctx, inv); err != nil {
			t.Fatal(err)
		}
	}
	if got := rdb.Get(ctx, "thread_count:"+account).Val(); got != "4" {
		t.Fatalf("thread_count = %s after repeated repair, want 4", got)
	}
}

func TestInvalidateIsOneRoundTrip(t *testing.T) {
	url, rdb := testenv.Redis(t)
	proxy := testenv.StartProxy(t, testenv.RedisAddr())
	client, _ := redis.NewClient(redis.Options{URL: testenv.RedisViaAddr(url, proxy.Addr)})
	defer client.Close()
	ctx := context.Background()
	if err := client.Ping(ctx).Err(); err != nil { // connection setup is not counted
		t.Fatal(err)
	}
	account := testenv.NewUUID()
	rdb.Set(ctx, "thread_count:"+account, "3", 0)
	before := proxy.RoundTrips()
	ids := []string{testenv.NewUUID(), testenv.NewUUID(), testenv.NewUUID()}
	err := (&redis.Cache{Client: client}).Invalidate(ctx, threads.Invalidation{Key: ids[0], AccountID: account, ProjectID: testenv.NewUUID(), ThreadIDs: ids, ProjectDeleted: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := proxy.RoundTrips() - before; n != 1 {
		t.Fatalf("%d round trips to Redis, want 1", n)
	}
	if rdb.Get(ctx, "thread_count:"+account).Val() != "0" {
		t.Fatal("counter not lowered")
	}
}

func TestNewClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"http://x", "redis://:abc", "::"} {
		if _, err := redis.NewClient(redis.Options{URL: u}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}
