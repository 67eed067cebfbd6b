package redis_test

import (
	"context"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/shared/redis"
	"github.com/kortix-ai/thread-delete/shared/testenv"
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
	if err := (&redis.Cache{Client: client}).Invalidate(ctx, threads.Invalidation{Key: thread, AccountID: account, ThreadIDs: []string{thread}}); err != nil {
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

// TestCluster runs the invalidation against a real three-node cluster:
// the keys of one delete live in different slots, so anything but per-key
// commands would fail with CROSSSLOT.
func TestCluster(t *testing.T) {
	node := testenv.RedisCluster(t)
	client, err := redis.NewClient(redis.Options{URL: "redis://" + node, Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, ok := client.(*goredis.ClusterClient); !ok {
		t.Fatalf("REDIS_CLUSTER=true built a %T", client)
	}
	ctx := context.Background()
	account, project := testenv.NewUUID(), testenv.NewUUID()
	ids := []string{testenv.NewUUID(), testenv.NewUUID(), testenv.NewUUID()}
	set := map[string]string{
		"thread_count:" + account: "10", "project_count:" + account: "2",
		"cache:account_state:" + account: "{}", "project_meta:" + project: "{}",
	}
	for _, id := range ids {
		set["message_history:"+id] = "[]"
	}
	for k, v := range set {
		if err := client.Set(ctx, k, v, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cache := &redis.Cache{Client: client, Cluster: true}
	inv := threads.Invalidation{Key: ids[0], AccountID: account, ProjectID: project, ThreadIDs: ids, ProjectDeleted: true}
	if err := cache.Invalidate(ctx, inv); err != nil {
		t.Fatalf("cluster invalidate: %v", err)
	}
	if v := client.Get(ctx, "thread_count:"+account).Val(); v != "7" {
		t.Fatalf("thread_count = %q, want 7", v)
	}
	if v := client.Get(ctx, "project_count:"+account).Val(); v != "1" {
		t.Fatalf("project_count = %q, want 1", v)
	}
	if n := client.Exists(ctx, "cache:account_state:"+account).Val() + client.Exists(ctx, "project_meta:"+project).Val() +
		client.Exists(ctx, "message_history:"+ids[0]).Val() + client.Exists(ctx, "message_history:"+ids[1]).Val() + client.Exists(ctx, "message_history:"+ids[2]).Val(); n != 0 {
		t.Fatalf("%d cache keys survived", n)
	}
	// The standalone script over the same keys is refused by a cluster:
	// this is why cluster mode must use per-key commands.
	if err := (&redis.Cache{Client: client}).Invalidate(ctx, inv); err == nil {
		t.Fatal("multi-key script accepted by a cluster; the per-key path would be unnecessary")
	}
}
