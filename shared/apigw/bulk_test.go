package apigw_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/auth"
	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// bulkEvent loads events/bulk-delete.json with body and headers (nil value
// = header removed).
func bulkEvent(t *testing.T, body string, headers map[string]string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "events", "bulk-delete.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatal(err)
	}
	ev.Body = body
	ev.Headers["content-length"] = fmt.Sprint(len(body))
	delete(ev.Headers, "authorization")
	for k, v := range headers {
		ev.Headers[k] = v
	}
	return ev
}

func (s *stack) bulk(t *testing.T, body string, headers map[string]string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	return s.handle(t, bulkEvent(t, body, headers))
}

func (s *stack) handle(t *testing.T, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := s.handler.Handle(ctx, ev)
	if err != nil {
		t.Fatalf("handler returned an error: %v", err)
	}
	return resp
}

func idsBody(ids ...string) string {
	b, _ := json.Marshal(map[string][]string{"thread_ids": ids})
	return string(b)
}

// bulkAnswer is the 200 body of a bulk delete.
type bulkAnswer struct {
	Deleted   []string `json:"deleted"`
	NotFound  []string `json:"not_found"`
	Forbidden []string `json:"forbidden"`
}

func expectBulk(t *testing.T, resp events.APIGatewayV2HTTPResponse, want bulkAnswer) {
	t.Helper()
	if resp.StatusCode != 200 || resp.Headers["Content-Type"] != "application/json" {
		t.Fatalf("status %d, Content-Type %q, body %s", resp.StatusCode, resp.Headers["Content-Type"], resp.Body)
	}
	dec := json.NewDecoder(strings.NewReader(resp.Body))
	dec.DisallowUnknownFields()
	var got bulkAnswer
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("body %s: %v", resp.Body, err)
	}
	for _, l := range []*[]string{&want.Deleted, &want.NotFound, &want.Forbidden} {
		if *l == nil {
			*l = []string{}
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body = %+v\nwant   %+v", got, want)
	}
}

// Three ids that empty one project and keep another: one 200 lists them,
// the emptied project goes with one teardown, the counters drop once per
// thread and project, and the running agents are told to stop.
func TestBulkDeleteEmptiesOneProjectAndKeepsAnother(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner := s.PersonalAccount()
	p1 := s.Project(owner, s.Sandbox(owner, "sb-bulk-1"), "")
	p2 := s.Project(owner, s.Sandbox(owner, "sb-bulk-2"), "")
	a, b := s.Thread(owner, p1, ""), s.Thread(owner, p1, "")
	c, keep := s.Thread(owner, p2, ""), s.Thread(owner, p2, "")
	runA, runC := s.Run(a, "running"), s.Run(c, "running")
	doneB := s.Run(b, "completed")
	keepRun := s.Run(keep, "running")
	s.rdb.Set(ctx, "thread_count:"+owner, "10", 0)
	s.rdb.Set(ctx, "project_count:"+owner, "4", 0)
	s.rdb.Set(ctx, "cache:account_state:"+owner, "{}", 0)
	s.rdb.Set(ctx, "project_meta:"+p1, "{}", 0)
	s.rdb.Set(ctx, "project_meta:"+p2, "{}", 0)
	control := s.listenControl(t, runA, runC, doneB, keepRun)

	upperB := strings.ToUpper(b)
	expectBulk(t, s.bulk(t, idsBody(a, upperB, c), bearer(owner)), bulkAnswer{Deleted: []string{a, upperB, c}})

	if s.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p1) != 0 ||
		s.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p2) != 1 ||
		s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, keep) != 1 {
		t.Fatal("P1 must go, P2 and its other thread stay")
	}
	want := map[string]string{
		"thread_count:" + owner:        "7",
		"project_count:" + owner:       "3",
		"cache:account_state:" + owner: "<absent>",
		"project_meta:" + p1:           "<absent>",
		"project_meta:" + p2:           "{}",
	}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
	wantStops := map[string][]string{
		"agent_run:" + runA + ":control": {"STOP"},
		"agent_run:" + runC + ":control": {"STOP"},
	}
	if got := control.drain(t); !reflect.DeepEqual(got, wantStops) {
		t.Fatalf("control channels got %v\nwant %v (nothing for completed runs nor for %s)", got, wantStops, keepRun)
	}
	msgs := s.receive(t, 2)
	if len(msgs) != 1 || msgs[0].SandboxID != "sb-bulk-1" || msgs[0].ProjectID != p1 {
		t.Fatalf("queue = %+v, want one teardown of sb-bulk-1", msgs)
	}
}

// Every requested id lands in exactly one list, once, in the form first
// sent: own, a parent with its requested child, another account's thread,
// an unknown id and a repeat in another letter case.
func TestBulkDeleteMixedIDs(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner, other := s.PersonalAccount(), s.PersonalAccount()
	p := s.Project(owner, "", "")
	s.Thread(owner, p, "")
	own := s.Thread(owner, p, "")
	parent := s.Thread(owner, p, "")
	child := s.Thread(owner, p, parent)
	foreign := s.Thread(other, s.Project(other, "", ""), "")
	unknown := testenv.NewUUID()

	resp := s.bulk(t, idsBody(child, own, foreign, unknown, parent, strings.ToUpper(own), unknown), bearer(owner))
	expectBulk(t, resp, bulkAnswer{
		Deleted:   []string{child, own, parent},
		NotFound:  []string{unknown},
		Forbidden: []string{foreign},
	})
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, foreign) != 1 {
		t.Fatal("another account's thread was deleted")
	}

	// With an API key: its own account only.
	key := s.APIKey(other, "active", 0, func(secret string) string { return auth.HashSecret([]byte(apiKeySecret), secret) })
	mine := s.Thread(owner, p, "")
	expectBulk(t, s.bulk(t, idsBody(foreign, mine), map[string]string{"x-api-key": key}),
		bulkAnswer{Deleted: []string{foreign}, Forbidden: []string{mine}})
}

// A hundred ids are one request; a hundred and one are a 400.
func TestBulkDeleteSizeLimits(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner := s.PersonalAccount()
	p := s.Project(owner, "", "")
	var ids []string
	for range 101 {
		ids = append(ids, s.Thread(owner, p, ""))
	}
	before := s.Snapshot()
	expect(t, s.bulk(t, idsBody(ids...), bearer(owner)), 400, map[string]string{"detail": "thread_ids must list 1 to 100 thread IDs"})
	if !maps.Equal(before, s.Snapshot()) {
		t.Fatal("a refused request changed data")
	}
	expectBulk(t, s.bulk(t, idsBody(ids[:100]...), bearer(owner)), bulkAnswer{Deleted: ids[:100]})
	if s.Count(`SELECT count(*) FROM public.threads WHERE project_id = $1`, p) != 1 {
		t.Fatal("want exactly the 101st thread left")
	}
}

// A bad body is a 400 before authentication (no credentials needed to be
// told) and changes nothing.
func TestBulkDeleteRejectsBadBodies(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner := s.PersonalAccount()
	th := s.Thread(owner, s.Project(owner, "", ""), "")
	const (
		invalidBody = "Invalid request body: expected {\"thread_ids\": [\"<uuid>\", ...]}"
		badSize     = "thread_ids must list 1 to 100 thread IDs"
		badID       = "Invalid thread ID"
	)
	huge := `{"thread_ids": ["` + th + `"], "pad": "` + strings.Repeat("x", 70<<10) + `"}`
	tests := []struct {
		name, body, detail string
		base64             bool
	}{
		{"empty body", "", invalidBody, false},
		{"not JSON", "thread_ids=" + th, invalidBody, false},
		{"a JSON array", `["` + th + `"]`, invalidBody, false},
		{"thread_ids missing", `{"ids": ["` + th + `"]}`, invalidBody, false},
		{"thread_ids null", `{"thread_ids": null}`, invalidBody, false},
		{"thread_ids a string", `{"thread_ids": "` + th + `"}`, invalidBody, false},
		{"an id of the wrong type", `{"thread_ids": ["` + th + `", 42]}`, invalidBody, false},
		{"trailing data", idsBody(th) + ` {}`, invalidBody, false},
		{"huge body", huge, invalidBody, false},
		{"bad base64", "%%%", invalidBody, true},
		{"empty list", `{"thread_ids": []}`, badSize, false},
		{"a non-UUID among valid ids", idsBody(th, "not-a-uuid"), badID, false},
		{"a UUID with a Cyrillic а", idsBody(th, th[:35]+"а"), badID, false},
	}
	for _, tc := range tests {
		for _, headers := range []map[string]string{bearer(owner), nil} {
			t.Run(fmt.Sprintf("%s (credentials %v)", tc.name, headers != nil), func(t *testing.T) {
				before := s.Snapshot()
				ev := bulkEvent(t, tc.body, headers)
				if tc.base64 {
					ev.IsBase64Encoded = true
				}
				expect(t, s.handle(t, ev), 400, map[string]string{"detail": tc.detail})
				if !maps.Equal(before, s.Snapshot()) {
					t.Fatal("a rejected request changed data")
				}
			})
		}
	}
	// A valid base64 body (API Gateway encodes some content types) works.
	ev := bulkEvent(t, base64.StdEncoding.EncodeToString([]byte(idsBody(th))), bearer(owner))
	ev.IsBase64Encoded = true
	expectBulk(t, s.handle(t, ev), bulkAnswer{Deleted: []string{th}})
}

// Same authentication and error shapes as DELETE.
func TestBulkDeleteAuthentication(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner := s.PersonalAccount()
	th := s.Thread(owner, "", "")
	body := idsBody(th)
	resp := s.bulk(t, body, nil)
	expect(t, resp, 401, map[string]string{"detail": auth.DetailNoCredentials})
	if resp.Headers["WWW-Authenticate"] != "Bearer" {
		t.Fatalf("401 without WWW-Authenticate: %v", resp.Headers)
	}
	expect(t, s.bulk(t, body, map[string]string{"x-api-key": "pk_x"}), 401, map[string]string{"detail": auth.DetailInvalidAPIKeyFormat})
	s.pgProxy.Refuse(true)
	s.pgProxy.CutAll()
	resp = s.bulk(t, body, bearer(owner))
	expect(t, resp, 503, nil)
	if resp.Headers["Retry-After"] == "" {
		t.Fatal("503 without Retry-After")
	}
	s.pgProxy.Refuse(false)
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, th) != 1 {
		t.Fatal("a refused request changed data")
	}
}

// Two multi-select requests over the same projects at once: no deadlock,
// no orphan, no double teardown, counters exact.
func TestBulkDeleteConcurrentRequestsOverTheSameProjects(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner := s.PersonalAccount()
	var all, projects []string
	for i := range 3 {
		p := s.Project(owner, s.Sandbox(owner, fmt.Sprintf("sb-conc-%d", i)), "")
		projects = append(projects, p)
		for range 4 {
			th := s.Thread(owner, p, "")
			s.Content(th, 2, 1, 1)
			all = append(all, th)
		}
	}
	s.rdb.Set(ctx, "thread_count:"+owner, len(all)+2, 0)
	s.rdb.Set(ctx, "project_count:"+owner, 5, 0)
	first, second := slices.Clone(all[:8]), slices.Clone(all[4:])
	slices.Reverse(second)
	var wg sync.WaitGroup
	answers := make([]bulkAnswer, 2)
	for i, ids := range [][]string{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := s.bulk(t, idsBody(ids...), bearer(owner))
			if resp.StatusCode != 200 {
				t.Errorf("status %d: %s", resp.StatusCode, resp.Body)
				return
			}
			json.Unmarshal([]byte(resp.Body), &answers[i]) //nolint:errcheck
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	deleted := map[string]int{}
	for _, a := range answers {
		for _, id := range a.Deleted {
			deleted[id]++
		}
	}
	for _, id := range all {
		if deleted[id] != 1 {
			t.Fatalf("thread %s reported deleted %d times", id, deleted[id])
		}
	}
	for _, p := range projects {
		if s.Count(`SELECT count(*) FROM public.projects WHERE project_id = $1`, p) != 0 ||
			s.Count(`SELECT count(*) FROM thread_delete.outbox WHERE kind = 'sandbox_teardown' AND payload->>'project_id' = $1`, p) != 1 {
			t.Fatalf("project %s left, or not exactly one teardown", p)
		}
	}
	want := map[string]string{"thread_count:" + owner: "2", "project_count:" + owner: "2"}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
}

// DELETE tells the running agents of every thread it removes to stop
// (sub-agent threads included), and says nothing to finished ones.
func TestDeleteStopsRunningAgents(t *testing.T) {
	s := newStack(t, stackOptions{})
	owner := s.PersonalAccount()
	p := s.Project(owner, "", "")
	s.Thread(owner, p, "")
	th := s.Thread(owner, p, "")
	child := s.Thread(owner, p, th)
	r1, r2 := s.Run(th, "running"), s.Run(child, "running")
	done, failed := s.Run(th, "completed"), s.Run(child, "failed")
	control := s.listenControl(t, r1, r2, done, failed)
	expect(t, s.delete(t, th, bearer(owner)), 200, nil)
	want := map[string][]string{"agent_run:" + r1 + ":control": {"STOP"}, "agent_run:" + r2 + ":control": {"STOP"}}
	if got := control.drain(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("control channels got %v\nwant %v", got, want)
	}
}

// Defect 6 of the closure review: the commit's reply is lost on the way
// back. The client gets a 503 although the delete stands; its Redis work
// was recorded in the same transaction, so the sweeper completes it.
func TestCommitReplyLostIs503AndTheWorkIsStillDone(t *testing.T) {
	s := newStack(t, stackOptions{})
	ctx := context.Background()
	owner := s.PersonalAccount()
	p := s.Project(owner, "", "")
	s.Thread(owner, p, "")
	th := s.Thread(owner, p, "")
	s.rdb.Set(ctx, "thread_count:"+owner, "5", 0)
	s.rdb.Set(ctx, "message_history:"+th, "[]", 0)
	// The pooled connection is open, so the next flight is the delete's.
	if err := s.deleter().Store.(*postgres.Store).Pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	s.pgProxy.DropNextReply()
	resp := s.delete(t, th, bearer(owner))
	expect(t, resp, 503, nil)
	if s.Count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, th) != 0 {
		t.Fatal("the delete did not commit: the test did not drop the commit's reply")
	}
	if got := s.rdb.Get(ctx, "thread_count:"+owner).Val(); got != "5" {
		t.Fatalf("thread_count = %s before the sweep", got)
	}
	s.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '1 hour' WHERE kind = 'redis_work'`)
	if rep := s.sweep(t); rep.CacheDone != 1 {
		t.Fatalf("sweep = %+v, want the work completed", rep)
	}
	want := map[string]string{"thread_count:" + owner: "<absent>", "message_history:" + th: "<absent>"}
	if got := s.redisState(slicesOf(want)...); !maps.Equal(got, want) {
		t.Fatalf("redis = %v\nwant    %v", got, want)
	}
}

// Sign-out can mean sign-out: with JWT_REQUIRE_SESSION the token's session
// must still exist. A signed-out user's still-valid token is a 401 and
// changes nothing; the same check rides in the delete's one round trip.
func TestSignedOutSessionIs401WhenSessionsAreRequired(t *testing.T) {
	s := newStack(t, stackOptions{requireSession: true})
	owner := s.PersonalAccount()
	live, gone := s.Session(owner, time.Time{}), s.Session(owner, time.Time{})
	s.Exec(`DELETE FROM auth.sessions WHERE id = $1`, gone) // signed out
	token := func(session string) map[string]string {
		return map[string]string{"authorization": "Bearer " + testenv.TokenWith(map[string]any{
			"sub": owner, "aud": "authenticated", "role": "authenticated", "session_id": session,
			"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		})}
	}
	th := s.Thread(owner, "", "")
	before := s.Snapshot()
	for _, ev := range []events.APIGatewayV2HTTPRequest{event(t, th, token(gone)), bulkEvent(t, idsBody(th), token(gone))} {
		resp := s.handle(t, ev)
		expect(t, resp, 401, map[string]string{"detail": "Session expired or signed out"})
		if resp.Headers["WWW-Authenticate"] != "Bearer" {
			t.Fatal("401 without WWW-Authenticate")
		}
	}
	if !maps.Equal(before, s.Snapshot()) {
		t.Fatal("a signed-out session changed data")
	}
	expect(t, s.delete(t, th, token(live)), 200, nil)
}
