// Package redis keeps Kortix's Redis counters and caches in step with
// committed deletes, and tells the agents of deleted threads to stop
// (go-redis v9; standalone or cluster-mode ElastiCache).
package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/shared/cleanup"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Key names used by Kortix; the service must keep them exactly.
func threadCountKey(account string) string   { return "thread_count:" + account }
func projectCountKey(account string) string  { return "project_count:" + account }
func accountStateKey(account string) string  { return "cache:account_state:" + account }
func projectMetaKey(project string) string   { return "project_meta:" + project }
func messageHistoryKey(thread string) string { return "message_history:" + thread }

// ControlChannel is where Kortix's workers listen for the signals of one
// agent run; StopSignal tells the worker running it to stop (Kortix's own
// stop path publishes the same).
func ControlChannel(run string) string { return "agent_run:" + run + ":control" }

// StopSignal is the payload of the stop message.
const StopSignal = "STOP"

// MarkerKey is where a standalone server records that the work of outbox
// row id was applied, inline or as a repair.
func MarkerKey(id string) string { return "thread_delete:applied:" + id }

// keyMarker is the cluster-mode marker of one key's part of the work of row
// id. Its hash tag is the data key (or channel) itself, so the marker lives
// in the same slot as the key and one script can test and set it together
// with the change: every part of the work is applied exactly once, even when
// one shard fails and the others do not.
func keyMarker(key, id string) string { return "thread_delete:applied:{" + key + "}:" + id }

// MarkerTTL is how long a marker is kept: far longer than the sweeper takes
// to reach a row (about a minute). Should it come later still, the work is
// applied again in its repair form, which is harmless.
const MarkerTTL = time.Hour

// opKind is one kind of change in a piece of work.
type opKind int

const (
	opDecr    opKind = iota // lower a counter (repair form: delete it)
	opDel                   // delete a cached key
	opPublish               // publish the stop signal on a channel
)

// op is one change: key is the data key, or the channel for opPublish.
type op struct {
	kind opKind
	key  string
	by   int
}

// opsOf lists the changes of w, counters first.
func opsOf(w threads.CacheWork) []op {
	var ops, dels []op
	for _, a := range w.Accounts {
		if a.AccountID == "" {
			continue
		}
		if a.Threads > 0 {
			ops = append(ops, op{opDecr, threadCountKey(a.AccountID), a.Threads})
		}
		if a.Projects > 0 {
			ops = append(ops, op{opDecr, projectCountKey(a.AccountID), a.Projects})
		}
		dels = append(dels, op{kind: opDel, key: accountStateKey(a.AccountID)})
	}
	for _, t := range w.ThreadIDs {
		dels = append(dels, op{kind: opDel, key: messageHistoryKey(t)})
	}
	for _, p := range w.ProjectIDs {
		dels = append(dels, op{kind: opDel, key: projectMetaKey(p)})
	}
	ops = append(ops, dels...)
	for _, r := range w.StopRuns {
		ops = append(ops, op{kind: opPublish, key: ControlChannel(r)})
	}
	return ops
}

// decrementLua lowers a counter by `by` on the server, atomically, only if
// the key exists and never below zero; the key's TTL is kept. A value that
// is not a number is deleted so that Kortix recomputes it.
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

// workLua applies a whole piece of work atomically and at most once
// (standalone server). KEYS[1] marker, KEYS[2 .. 1+n] counters, the rest
// keys to delete; ARGV[1] marker TTL in seconds, ARGV[2] "1" for the repair
// form, ARGV[3] n, ARGV[4 .. 3+n] what each counter loses, the rest channels
// to publish the stop signal on. Returns 0 when the marker shows the work
// was applied already. The marker is set last: Redis does not roll back a
// script that fails midway (a key of the wrong type), so a marker set first
// would hide the unfinished rest from the repair.
const workLua = decrementLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[3])
for i = 1, n do
  if ARGV[2] == '1' then redis.call('DEL', KEYS[1 + i]) else dec(KEYS[1 + i], tonumber(ARGV[3 + i])) end
end
for i = 2 + n, #KEYS do redis.call('DEL', KEYS[i]) end
for i = 4 + n, #ARGV do redis.call('PUBLISH', ARGV[i], '` + StopSignal + `') end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
`

// opLua applies one change at most once (cluster mode). KEYS[1] the
// marker, KEYS[2] the data key (absent for a publish); ARGV[1] marker TTL in
// seconds, ARGV[2] the change: "decr", "del" or "publish", ARGV[3] the
// amount or the channel.
const opLua = decrementLua + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if ARGV[2] == 'decr' then dec(KEYS[2], tonumber(ARGV[3]))
elseif ARGV[2] == 'del' then redis.call('DEL', KEYS[2])
else redis.call('PUBLISH', ARGV[3], '` + StopSignal + `') end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
`

// Cache applies the Redis work of deletes: inline (threads.Cache) and as a
// repair (cleanup.Repairer).
type Cache struct {
	Client goredis.UniversalClient
	// Cluster selects one script per key (cluster mode cannot run one
	// script over keys in different slots), each guarded by a marker in its
	// key's slot.
	Cluster bool
}

var (
	_ threads.Cache    = (*Cache)(nil)
	_ cleanup.Repairer = (*Cache)(nil)
)

// Apply applies w in one round trip: one EVAL on a standalone server, one
// pipeline (one EVAL per key, each node's share sent at once) in cluster
// mode. The marker makes applying it again a no-op.
func (c *Cache) Apply(ctx context.Context, w threads.CacheWork) error {
	if errs := c.run(ctx, []threads.CacheWork{w}, false); errs[0] != nil {
		return fmt.Errorf("redis: apply work %s: %w", w.ID, errs[0])
	}
	return nil
}

// Repair applies each work in its repair form, in one round trip for the
// batch: counters are deleted rather than lowered (Kortix rebuilds an absent
// counter from the database), so repairing after the counter was rebuilt,
// or repairing twice, stays right. Work whose marker is present was applied
// already and is left alone.
func (c *Cache) Repair(ctx context.Context, works []threads.CacheWork) []error {
	return c.run(ctx, works, true)
}

// run sends the scripts of works in one pipeline and returns each work's
// first error.
func (c *Cache) run(ctx context.Context, works []threads.CacheWork, repair bool) []error {
	ttl := int(MarkerTTL.Seconds())
	pipe := c.Client.Pipeline()
	cmds := make([][]*goredis.Cmd, len(works))
	for i, w := range works {
		ops := opsOf(w)
		if !c.Cluster {
			cmds[i] = []*goredis.Cmd{pipe.Eval(ctx, workLua, workKeys(w.ID, ops), workArgs(ttl, repair, ops)...)}
			continue
		}
		for _, o := range ops {
			cmds[i] = append(cmds[i], evalOp(ctx, pipe, o, w.ID, ttl, repair))
		}
	}
	// EVAL, not EVALSHA: a cold server would answer NOSCRIPT and cost a
	// second round trip; the scripts are a few hundred bytes.
	_, _ = pipe.Exec(ctx) // errors are read per command below
	errs := make([]error, len(works))
	for i := range works {
		for _, cmd := range cmds[i] {
			if err := cmd.Err(); err != nil {
				errs[i] = err
				break
			}
		}
	}
	return errs
}

// workKeys and workArgs lay out workLua's KEYS and ARGV for ops (counters
// first, as opsOf returns them).
func workKeys(id string, ops []op) []string {
	keys := []string{MarkerKey(id)}
	for _, o := range ops {
		if o.kind != opPublish {
			keys = append(keys, o.key)
		}
	}
	return keys
}

func workArgs(ttl int, repair bool, ops []op) []any {
	n := 0
	for _, o := range ops {
		if o.kind == opDecr {
			n++
		}
	}
	args := []any{ttl, boolArg(repair), n}
	for _, o := range ops {
		if o.kind == opDecr {
			args = append(args, o.by)
		}
	}
	for _, o := range ops {
		if o.kind == opPublish {
			args = append(args, o.key)
		}
	}
	return args
}

// evalOp queues the cluster-mode script of one change.
func evalOp(ctx context.Context, pipe goredis.Pipeliner, o op, id string, ttl int, repair bool) *goredis.Cmd {
	marker := keyMarker(o.key, id)
	switch {
	case o.kind == opPublish:
		return pipe.Eval(ctx, opLua, []string{marker}, ttl, "publish", o.key)
	case o.kind == opDel || repair:
		return pipe.Eval(ctx, opLua, []string{marker, o.key}, ttl, "del", 0)
	default:
		return pipe.Eval(ctx, opLua, []string{marker, o.key}, ttl, "decr", o.by)
	}
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
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
