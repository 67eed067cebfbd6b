package apigw_test

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/golang-jwt/jwt/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/apigw"
	"github.com/kortix-ai/thread-delete/shared/auth"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

func TestDeleteSucceedsAndKeepsRedisInStep(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner := s.PersonalAccount()
	p := s.Project(owner, s.Sandbox(owner, "sb-200"), "")
	keep := s.Thread(owner, p, "")
	// A fixed id with letters: the upper-cased form must differ from it.
	th := s.ThreadWithID("7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10", owner, p, "")
	child := s.Thread(owner, p, th)
	s.Content(th, 5, 1, 2)
	s.Content(child, 3, 1, 0)
	s.rdb.Set(ctx, "thread_count:"+owner, "7", 0)
	s.rdb.Set(ctx, "project_count:"+owner, "2", 0)
	s.rdb.Set(ctx, "cache:account_state:"+owner, "{}", 0)
	s.rdb.Set(ctx, "message_history:"+th, "[]", 0)
	s.rdb.Set(ctx, "message_history:"+child, "[]", 0)
	s.rdb.Set(ctx, "message_history:"+keep, "[]", 0)
	s.rdb.Set(ctx, "project_meta:"+p, "{}", 0)

	upper := strings.ToUpper(th) // any letter case is a UUID
	resp := s.delete(t, upper, bearer(owner))
	expect(t, resp, 200, map[string]string{"message": "Thread deleted successfully", "thread_id": upper})

	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = ANY($1::uuid[])`, []string{th, child}) != 0 {
		t.Fatal("thread or its sub-agent thread survived")
	}
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, keep) != 1 {
		t.Fatal("sibling thread was deleted")
	}
	want := map[string]string{
		"thread_count:" + owner:        "5", // the thread and its sub-agent thread
		"project_count:" + owner:       "2", // project kept
		"cache:account_state:" + owner: "<absent>",
		"message_history:" + th:        "<absent>",
		"message_history:" + child:     "<absent>",
		"message_history:" + keep:      "[]",
		"project_meta:" + p:            "{}",
	}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
	if msgs := s.receive(t, 0); len(msgs) != 0 {
		t.Fatalf("teardown sent for a project that still has threads: %v", msgs)
	}

	// The last thread: project and sandbox go.
	resp = s.delete(t, keep, bearer(owner))
	expect(t, resp, 200, map[string]string{"message": "Thread deleted successfully", "thread_id": keep})
	if s.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p) != 0 {
		t.Fatal("project survived its last thread")
	}
	want = map[string]string{
		"thread_count:" + owner:   "4",
		"project_count:" + owner:  "1",
		"project_meta:" + p:       "<absent>",
		"message_history:" + keep: "<absent>",
	}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
	msgs := s.receive(t, 2)
	if len(msgs) != 1 || msgs[0].SandboxID != "sb-200" || msgs[0].ProjectID != p || msgs[0].AccountID != owner || msgs[0].ThreadID != keep {
		t.Fatalf("queue = %+v, want one teardown of sb-200", msgs)
	}
	if s.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = $1 AND status = 'pending'`, msgs[0].JobID) != 1 {
		t.Fatal("message does not carry the pending outbox row's id")
	}

	// Deleting it again is a 404 and changes nothing.
	before := s.Snapshot()
	expect(t, s.delete(t, keep, bearer(owner)), 404, map[string]string{"detail": "Thread not found"})
	if !maps.Equal(before, s.Snapshot()) {
		t.Fatal("a 404 changed data")
	}
}

func TestCountersOfTheOwningAccountNotTheCaller(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner, admin := s.PersonalAccount(), s.PersonalAccount()
	s.Role(admin, "admin")
	p := s.Project(owner, "", "")
	th := s.Thread(owner, p, "")
	s.rdb.Set(ctx, "thread_count:"+owner, "0", 0) // zero stays zero
	s.rdb.Set(ctx, "thread_count:"+admin, "3", 0)
	s.rdb.Set(ctx, "cache:account_state:"+admin, "{}", 0)

	expect(t, s.delete(t, th, bearer(admin)), 200, nil)
	want := map[string]string{
		"thread_count:" + owner:        "0",
		"project_count:" + owner:       "<absent>", // absent stays absent
		"thread_count:" + admin:        "3",
		"cache:account_state:" + admin: "{}",
	}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
}

// rejectedThreadID is the thread TestRejectedRequestsChangeNothing aims at.
// It is fixed because some inputs are derived from it and need a Latin "a"
// at known places (first, in the middle, last): about one random UUID in
// nine has no "a" at all.
const rejectedThreadID = "a7e3c1d0-5b2a-4f6e-9d8c-1b0e2f4c6d8a"

// lookalike returns id with the Latin "a" at byte i replaced by the Cyrillic
// "а" (U+0430), which renders the same: an id a reader cannot tell from the
// real one. It fails the test unless id[i] is that "a", so the input can
// never silently be the real id.
func lookalike(t *testing.T, id string, i int) string {
	t.Helper()
	if id[i] != 'a' {
		t.Fatalf("lookalike: %q has no Latin a at byte %d", id, i)
	}
	return id[:i] + "\u0430" + id[i+1:]
}

func TestRejectedRequestsChangeNothing(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner, stranger := s.PersonalAccount(), s.PersonalAccount()
	p := s.Project(owner, s.Sandbox(owner, "sb-keep"), "")
	th := s.ThreadWithID(rejectedThreadID, owner, p, "")
	s.Content(th, 3, 1, 1)
	s.rdb.Set(ctx, "thread_count:"+owner, "1", 0)
	s.rdb.Set(ctx, "cache:account_state:"+owner, "{}", 0)

	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) map[string]string {
		c := jwt.MapClaims{"sub": owner, "aud": "authenticated", "exp": now.Add(time.Hour).Unix()}
		mod(c)
		return map[string]string{"authorization": "Bearer " + testenv.TokenWith(c)}
	}
	noneToken := func() map[string]string {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": owner, "aud": "authenticated", "exp": now.Add(time.Hour).Unix()}).
			SignedString(jwt.UnsafeAllowNoneSignatureType)
		return map[string]string{"authorization": "Bearer " + tok}
	}
	wrongSecret := func() map[string]string {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": owner, "aud": "authenticated", "exp": now.Add(time.Hour).Unix()}).
			SignedString([]byte("another secret"))
		return map[string]string{"authorization": "Bearer " + tok}
	}
	unauthorized := 401
	tests := []struct {
		name    string
		id      string
		headers map[string]string
		status  int
		detail  string
	}{
		{"invalid id", "not-a-uuid", bearer(owner), 400, "Invalid thread ID"},
		{"sql in id", "1' OR '1'='1", bearer(owner), 400, "Invalid thread ID"},
		{"path traversal", "../../projects/" + p, bearer(owner), 400, "Invalid thread ID"},
		{"look-alike unicode first", lookalike(t, th, 0), bearer(owner), 400, "Invalid thread ID"},
		{"look-alike unicode in the middle", lookalike(t, th, 12), bearer(owner), 400, "Invalid thread ID"},
		{"look-alike unicode last", lookalike(t, th, len(th)-1), bearer(owner), 400, "Invalid thread ID"},
		{"uuid without hyphens", strings.ReplaceAll(th, "-", ""), bearer(owner), 400, "Invalid thread ID"},
		{"no credentials", th, nil, unauthorized, ""},
		{"basic auth", th, map[string]string{"authorization": "Basic dXNlcjpwYXNz"}, unauthorized, ""},
		{"bad signature", th, wrongSecret(), unauthorized, ""},
		{"alg none", th, noneToken(), unauthorized, ""},
		{"expired", th, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() }), unauthorized, ""},
		{"not yet valid", th, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), unauthorized, ""},
		{"wrong audience", th, claims(func(c jwt.MapClaims) { c["aud"] = "anon" }), unauthorized, ""},
		{"sub not a uuid", th, claims(func(c jwt.MapClaims) { c["sub"] = "admin" }), unauthorized, ""},
		{"stranger", th, bearer(stranger), 403, "Not authorized to modify this thread"},
		{"unknown thread", testenv.NewUUID(), bearer(owner), 404, "Thread not found"},
		{"malformed api key", th, map[string]string{"x-api-key": "pk_short:sk_short"}, unauthorized, "Invalid API key format. Expected format: pk_xxx:sk_xxx"},
		{"empty api key wins over a valid jwt", th, map[string]string{"x-api-key": "", "authorization": "Bearer " + testenv.Token(owner)}, unauthorized, "Invalid API key format. Expected format: pk_xxx:sk_xxx"},
		{"unknown api key", th, map[string]string{"x-api-key": "pk_" + strings.Repeat("a", 32) + ":sk_" + strings.Repeat("b", 32)}, unauthorized, "Invalid API key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, redisBefore := s.Snapshot(), s.redisState("thread_count:"+owner, "cache:account_state:"+owner)
			resp := s.delete(t, tc.id, tc.headers)
			if tc.detail != "" {
				expect(t, resp, tc.status, map[string]string{"detail": tc.detail})
			} else {
				expect(t, resp, tc.status, nil)
			}
			if tc.status == 401 && resp.Headers["WWW-Authenticate"] != "Bearer" {
				t.Fatalf("401 without WWW-Authenticate: Bearer: %v", resp.Headers)
			}
			if strings.Contains(strings.ToLower(resp.Body), "error") || strings.Contains(resp.Body, "sql") {
				t.Fatalf("body leaks internals: %s", resp.Body)
			}
			if !maps.Equal(before, s.Snapshot()) {
				t.Fatal("a rejected request changed the database")
			}
			if !maps.Equal(redisBefore, s.redisState("thread_count:"+owner, "cache:account_state:"+owner)) {
				t.Fatal("a rejected request changed Redis")
			}
		})
	}
	if msgs := s.receive(t, 0); len(msgs) != 0 {
		t.Fatalf("a rejected request queued work: %v", msgs)
	}
}

func TestAPIKeys(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner, member := s.PersonalAccount(), s.PersonalAccount()
	team := s.TeamAccount(owner)
	s.Member(team, member, "member")
	hash := func(secret string) string { return auth.HashSecret([]byte(apiKeySecret), secret) }
	teamKey := s.APIKey(team, "active", 0, hash)
	otherKey := s.APIKey(s.PersonalAccount(), "active", time.Hour, hash)
	revoked := s.APIKey(team, "revoked", 0, hash)
	expired := s.APIKey(team, "active", -time.Minute, hash)
	pk, sk, _ := strings.Cut(teamKey, ":")
	wrongSecret := pk + ":sk_" + strings.Repeat("Z", 32)
	_ = sk

	project := s.Project(team, "", "")
	th1, th2 := s.Thread(team, project, ""), s.Thread(team, project, "")
	lastUsed := func(key string) *time.Time {
		var ts *time.Time
		pub, _, _ := strings.Cut(key, ":")
		if err := s.Pool.QueryRow(context.Background(), `SELECT last_used_at FROM public.api_keys WHERE public_key = $1`, pub).Scan(&ts); err != nil {
			t.Fatal(err)
		}
		return ts
	}

	for name, key := range map[string]string{"revoked": revoked, "expired": expired, "wrong secret": wrongSecret} {
		before := s.Snapshot()
		expect(t, s.delete(t, th1, map[string]string{"x-api-key": key}), 401, map[string]string{"detail": "Invalid API key"})
		if !maps.Equal(before, s.Snapshot()) {
			t.Fatalf("%s key: rejected request changed data", name)
		}
	}

	// Another account's key may not write the team's thread; the key's use
	// is the only write a 403 makes.
	expect(t, s.delete(t, th1, map[string]string{"x-api-key": otherKey}), 403, map[string]string{"detail": "Not authorized to modify this thread"})
	if lastUsed(otherKey) == nil {
		t.Fatal("a successful key check must record last_used_at")
	}

	// The team's key acts as the team's primary owner.
	expect(t, s.delete(t, th1, map[string]string{"x-api-key": teamKey}), 200, nil)
	first := lastUsed(teamKey)
	if first == nil {
		t.Fatal("last_used_at not recorded")
	}
	// Within the minute it is not written again.
	expect(t, s.delete(t, th2, map[string]string{"x-api-key": teamKey, "authorization": "Bearer garbage"}), 200, nil)
	if second := lastUsed(teamKey); !second.Equal(*first) {
		t.Fatalf("last_used_at rewritten within a minute: %v then %v", first, second)
	}
	// After a minute it is.
	s.Exec(`UPDATE public.api_keys SET last_used_at = now() - interval '2 minutes' WHERE public_key = $1`, pk)
	th3 := s.Thread(team, "", "")
	expect(t, s.delete(t, th3, map[string]string{"x-api-key": teamKey}), 200, nil)
	if third := lastUsed(teamKey); time.Since(*third) > 30*time.Second {
		t.Fatalf("last_used_at not refreshed after a minute: %v", third)
	}
}

func TestAPIKeyRefusedWithoutSecret(t *testing.T) {
	s := newStack(t, stackOptions{noAPIKeySecret: true})
	owner := s.PersonalAccount()
	key := s.APIKey(owner, "active", 0, func(secret string) string { return auth.HashSecret([]byte(apiKeySecret), secret) })
	th := s.Thread(owner, "", "")
	expect(t, s.delete(t, th, map[string]string{"x-api-key": key}), 401, map[string]string{"detail": "Invalid API key"})
}

// Redis down: the delete still answers 200 at once, and its Redis work,
// recorded in the same transaction, is completed by the sweeper once Redis
// is back, in the repair form (counters deleted: Kortix rebuilds them).
func TestRedisDownStillSucceedsAndTheSweeperCompletesTheWork(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner := s.PersonalAccount()
	p := s.Project(owner, "", "")
	th := s.Thread(owner, p, "")
	run := s.Run(th, "running")
	s.rdb.Set(ctx, "thread_count:"+owner, "3", 0)
	s.rdb.Set(ctx, "project_count:"+owner, "2", 0)
	s.rdb.Set(ctx, "message_history:"+th, "[]", 0)
	s.rdProxy.Refuse(true)
	s.rdProxy.CutAll()
	start := time.Now()
	expect(t, s.delete(t, th, bearer(owner)), 200, nil)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v with Redis down", d)
	}
	if n := s.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'redis_work' AND status = 'pending' AND payload->'thread_ids' ? $1`, th); n != 1 {
		t.Fatalf("%d redis work rows pending, want 1", n)
	}
	if got := s.rdb.Get(ctx, "thread_count:"+owner).Val(); got != "3" {
		t.Fatalf("thread_count = %s while Redis was unreachable", got)
	}

	control := s.listenControl(t, run)
	s.rdProxy.Refuse(false)
	s.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '1 hour' WHERE kind = 'redis_work'`)
	rep := s.sweep(t)
	if rep.CacheDone != 1 || rep.CacheFailed != 0 {
		t.Fatalf("sweep = %+v, want one row completed", rep)
	}
	want := map[string]string{
		"thread_count:" + owner:  "<absent>",
		"project_count:" + owner: "<absent>",
		"message_history:" + th:  "<absent>",
	}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
	if got := control.drain(t); !reflect.DeepEqual(got, map[string][]string{"agent_run:" + run + ":control": {"STOP"}}) {
		t.Fatalf("control channels got %v, want one STOP for run %s", got, run)
	}
	if n := s.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'redis_work' AND status = 'done'`); n != 1 {
		t.Fatal("the completed work is not marked done")
	}
}

func TestQueueDownStillSucceedsAndKeepsTheTeardownPending(t *testing.T) {
	s := newStack(t, stackOptions{queueURL: "http://127.0.0.1:1/000000000000/nowhere"})
	owner := s.PersonalAccount()
	th := s.Thread(owner, s.Project(owner, s.Sandbox(owner, "sb-q"), ""), "")
	expect(t, s.delete(t, th, bearer(owner)), 200, nil)
	if n := s.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'sandbox_teardown' AND status = 'pending' AND payload->>'sandbox_id' = 'sb-q'`); n != 1 {
		t.Fatalf("%d pending teardowns, want 1", n)
	}
}

func TestDatabaseUnreachableIs503WithRetryAfter(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner := s.PersonalAccount()
	th := s.Thread(owner, "", "")
	s.pgProxy.Refuse(true)
	s.pgProxy.CutAll()
	start := time.Now()
	resp := s.delete(t, th, bearer(owner))
	expect(t, resp, 503, nil)
	if resp.Headers["Retry-After"] == "" {
		t.Fatal("503 without Retry-After")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("503 took %v", d)
	}
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, th) != 1 {
		t.Fatal("thread deleted although the request failed")
	}
}

func TestConnectionCutMidRequestDeletesNothing(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner := s.PersonalAccount()
	p := s.Project(owner, s.Sandbox(owner, "sb-cut"), "")
	th := s.Thread(owner, p, "")
	s.Content(th, 50, 2, 2)
	// Warm a connection, then cut it when the delete batch is sent.
	s.delete(t, testenv.NewUUID(), bearer(owner))
	before := s.Snapshot()
	s.pgProxy.CutOnNextFlight()
	s.pgProxy.Refuse(true)
	resp := s.delete(t, th, bearer(owner))
	expect(t, resp, 503, nil)
	if !maps.Equal(before, s.Snapshot()) {
		t.Fatal("a cut connection left a partial delete")
	}
}

func TestDeadlineTooCloseStartsNothing(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner := s.PersonalAccount()
	th := s.Thread(owner, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	resp, _ := s.handler.Handle(ctx, event(t, th, bearer(owner)))
	expect(t, resp, 503, nil)
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, th) != 1 {
		t.Fatal("work started with no time left")
	}
}

// failingDeleter makes the store's unexpected errors reachable.
type failingDeleter struct{ err error }

func (f failingDeleter) Delete(context.Context, threads.Request) (threads.Result, error) {
	return threads.Result{}, f.err
}

func TestUnexpectedErrorsNeverLeakInternalText(t *testing.T) {
	authn, _ := auth.New(auth.Config{HS256Secret: []byte(testenv.JWTSecret), Audience: "authenticated"})
	h := &apigw.Handler{Auth: authn, Deleter: failingDeleter{errors.New(`pq: relation "public.threads" does not exist at 10.0.3.7`)}}
	id := testenv.NewUUID()
	resp, err := h.Handle(context.Background(), event(t, id, bearer(testenv.NewUUID())))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, resp, 500, map[string]string{"detail": "Failed to delete thread"})
}

func TestOtherMethodsAreRefused(t *testing.T) {
	h := &apigw.Handler{}
	ev := events.APIGatewayV2HTTPRequest{RequestContext: events.APIGatewayV2HTTPRequestContext{HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: "GET"}}}
	resp, _ := h.Handle(context.Background(), ev)
	expect(t, resp, 405, nil)
}

func slicesOf(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
