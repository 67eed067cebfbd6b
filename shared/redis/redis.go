// Package redis keeps Kortix's Redis counters and caches in step with a
// committed delete (go-redis v9; standalone or cluster-mode ElastiCache).
package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Key names used by Kortix; the service must keep them exactly.
func threadCountKey(account string) string   { return "thread_count:" + account }
func projectCountKey(account string) string  { return "project_count:" + account }
func accountStateKey(account string) string  { return "cache:account_state:" + account }
func projectMetaKey(project string) string   { return "project_meta:" + project }
func messageHistoryKey(thread string) string { return "message_history:" + thread }

// MarkerKey is where a standalone server remembers (for MarkerTTL) that
// the invalidation of a deletion was applied.
func MarkerKey(deletion string) string { return "thread_delete:invalidated:" + deletion }

// MarkerTTL is how long a standalone server remembers that an invalidation
// was applied, so that a repair retried within that time does nothing.
const MarkerTTL = 24 * time.Hour

// decrementLua lowers a counter by ARGV[1] on the server, atomically, only
// if the key exists and never below zero; the key's TTL is kept. A value
// that is not a number is deleted so that Kortix recomputes it.
const decrementLua = `
local function dec(key, by)
  if by <= 0 then return end
  local v = redis.call('GET', key)
  if not v then return end
  local n = tonumber(v)
  if n == nil then redis.call('DEL', key) return end
  n = n - by
  if n < 0 then n = 0 end
  redis.call('SET', key, n, 'KEEPTTL')
end
`

// invalidateLua applies a whole invalidation atomically and at most once:
// KEYS[1] marker, KEYS[2] thread_count, KEYS[3] project_count, KEYS[4..]
// keys to delete; ARGV[1] threads deleted, ARGV[2] projects deleted, ARGV[3]
// marker TTL in seconds. Returns 0 when the marker shows it was applied.
const invalidateLua = decrementLua + `
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then return 0 end
dec(KEYS[2], tonumber(ARGV[1]))
dec(KEYS[3], tonumber(ARGV[2]))
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
`

// decrementScript is the single-key form used in cluster mode, where keys of
// one invalidation live in different hash slots.
const decrementKeyLua = decrementLua + `
dec(KEYS[1], tonumber(ARGV[1]))
return 1
`

// Cache implements threads.Cache.
type Cache struct {
	Client goredis.UniversalClient
	// Cluster selects per-key commands (cluster mode cannot run one script
	// over keys in different slots). Repairs in cluster mode are then not
	// guarded by the applied-marker: a repair after an ambiguous timeout may
	// lower a counter twice (never below zero).
	Cluster bool
}

var _ threads.Cache = (*Cache)(nil)

// Invalidate applies inv in one round trip: one EVAL on a standalone
// server, one pipeline per cluster node otherwise.
func (c *Cache) Invalidate(ctx context.Context, inv threads.Invalidation) error {
	threadsDeleted, projectsDeleted := len(inv.ThreadIDs), 0
	if inv.ProjectDeleted {
		projectsDeleted = 1
	}
	var drop []string
	if inv.AccountID != "" {
		drop = append(drop, accountStateKey(inv.AccountID))
	} else {
		threadsDeleted, projectsDeleted = 0, 0 // no owning account: no counters
	}
	if inv.ProjectDeleted && inv.ProjectID != "" {
		drop = append(drop, projectMetaKey(inv.ProjectID))
	}
	for _, id := range inv.ThreadIDs {
		drop = append(drop, messageHistoryKey(id))
	}

	if !c.Cluster {
		keys := append([]string{MarkerKey(inv.Key), threadCountKey(inv.AccountID), projectCountKey(inv.AccountID)}, drop...)
		// EVAL, not EVALSHA: a cold server would answer NOSCRIPT and cost a
		// second round trip; the script is a few hundred bytes.
		err := c.Client.Eval(ctx, invalidateLua, keys,
			threadsDeleted, projectsDeleted, int(MarkerTTL.Seconds())).Err()
		if err != nil {
			return fmt.Errorf("redis: invalidate: %w", err)
		}
		return nil
	}

	_, err := c.Client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		if threadsDeleted > 0 {
			p.Eval(ctx, decrementKeyLua, []string{threadCountKey(inv.AccountID)}, threadsDeleted)
		}
		if projectsDeleted > 0 {
			p.Eval(ctx, decrementKeyLua, []string{projectCountKey(inv.AccountID)}, projectsDeleted)
		}
		for _, k := range drop {
			p.Del(ctx, k) // one key per DEL: no CROSSSLOT
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis: invalidate: %w", err)
	}
	return nil
}

// Options tunes NewClient.
type Options struct {
	URL     string // redis:// or rediss:// (TLS)
	Cluster bool   // cluster-mode endpoint
	// Timeout bounds dialing and each read/write; the caller's context
	// bounds the whole operation. Zero means 500ms.
	Timeout time.Duration
}

// NewClient builds a client without connecting (connections are made on
// first use, so Lambda init never waits on Redis). The URL is parsed the
// same way in both modes (user, password, TLS for rediss://); cluster mode
// treats its host as the configuration endpoint.
func NewClient(o Options) (goredis.UniversalClient, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 500 * time.Millisecond
	}
	opt, err := goredis.ParseURL(o.URL)
	if err != nil {
		return nil, err
	}
	if o.Cluster && opt.DB != 0 {
		return nil, fmt.Errorf("redis: cluster mode has only database 0, the URL names %d", opt.DB)
	}
	return goredis.NewUniversalClient(&goredis.UniversalOptions{
		Addrs:                 []string{opt.Addr},
		IsClusterMode:         o.Cluster,
		Username:              opt.Username,
		Password:              opt.Password,
		DB:                    opt.DB,
		TLSConfig:             opt.TLSConfig,
		DisableIdentity:       true,
		ContextTimeoutEnabled: true,
		DialTimeout:           timeout,
		ReadTimeout:           timeout,
		WriteTimeout:          timeout,
		MaxRetries:            1,
		PoolSize:              4,
	}), nil
}
