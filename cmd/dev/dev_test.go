package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

// startStack runs the dev stack in-process on free ports, with a database
// and Redis database of its own, and stops it when the test ends. set
// changes options before the start.
func startStack(t *testing.T, set ...func(*Options)) (st *Stack, banner string, logs *localstack.Buffer, rdb *goredis.Client, stop func() error) {
	t.Helper()
	dbName := fmt.Sprintf("thread_delete_devtest_%d", time.Now().UnixNano()%1e9)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := localstack.DropDatabase(ctx, localstack.AdminURL(), dbName); err != nil {
			t.Logf("drop %s: %v", dbName, err)
		}
	})
	redisURL, rdb := testenv.Redis(t)
	logs = &localstack.Buffer{}
	out := &localstack.Buffer{}
	ready := make(chan *Stack, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	o := Options{
		Root:       testenv.RepoRoot(t),
		Database:   dbName,
		RedisURL:   redisURL,
		Addr:       "127.0.0.1:0",
		SQSPort:    testenv.FreePort(t),
		QueueName:  fmt.Sprintf("dev-test-%d", time.Now().UnixNano()%1e9),
		PollWait:   time.Second,
		Out:        out,
		Log:        newLogger(logs),
		Ready:      func(s *Stack) { ready <- s },
		SweepEvery: time.Minute,
	}
	for _, f := range set {
		f(&o)
	}
	go func() { done <- run(ctx, o) }()
	var stopped bool
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			return fmt.Errorf("run did not return within 20s of the cancel")
		}
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("stack logs:\n%s", logs.String())
		}
	})
	select {
	case st = <-ready:
	case err := <-done:
		stopped = true
		t.Fatalf("run: %v\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the stack did not come up within 60s\n%s", logs.String())
	}
	return st, out.String(), logs, rdb, stop
}

// curlRE matches the banner's request lines: a DELETE, or the
// multi-select POST with its JSON body.
var curlRE = regexp.MustCompile(`^curl -i -X (DELETE|POST) (\S+)(?: -H "([^:]+): ([^"]+)")?(?: -H "Content-Type: application/json" -d '([^']+)')?$`)

// bannerRequests returns the banner's curl lines as requests, in order.
func bannerRequests(t *testing.T, banner string) []*http.Request {
	t.Helper()
	var reqs []*http.Request
	sc := bufio.NewScanner(strings.NewReader(banner))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "curl ") {
			continue
		}
		m := curlRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("banner line not in the expected form: %s", line)
		}
		var body io.Reader
		if m[5] != "" {
			body = strings.NewReader(m[5])
		}
		req, err := http.NewRequest(m[1], m[2], body)
		if err != nil {
			t.Fatal(err)
		}
		if m[3] != "" {
			req.Header.Set(m[3], m[4])
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		reqs = append(reqs, req)
	}
	return reqs
}

func TestDevStackEndToEnd(t *testing.T) {
	st, banner, logs, rdb, stop := startStack(t)

	// The banner's requests, as printed, tell the whole story.
	reqs := bannerRequests(t, banner)
	want := []int{200, 200, 200, 403, 403, 400, 401, 200, 404}
	if len(reqs) != len(want) {
		t.Fatalf("banner has %d curl lines, want %d:\n%s", len(reqs), len(want), banner)
	}
	for i, req := range reqs {
		if !strings.HasPrefix(req.URL.String(), st.APIURL+"/threads/") {
			t.Fatalf("curl line %d targets %s, not the API at %s", i+1, req.URL, st.APIURL)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want[i] {
			t.Fatalf("curl line %d (%s): status %d %s, want %d", i+1, req.URL.Path, resp.StatusCode, body, want[i])
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("curl line %d: Content-Type %q", i+1, ct)
		}
		if req.Method == http.MethodPost {
			wantBody := `{"deleted":["` + localstack.NotesThreadID + `"],"not_found":["` + localstack.SecondThreadID + `"],"forbidden":["` + localstack.OtherThreadID + `"]}`
			if string(body) != wantBody {
				t.Fatalf("curl line %d: body %s, want %s", i+1, body, wantBody)
			}
			continue
		}
		if want[i] == 200 {
			var got map[string]string
			if err := json.Unmarshal(body, &got); err != nil || got["message"] != "Thread deleted successfully" || got["thread_id"] != strings.TrimPrefix(req.URL.Path, "/threads/") {
				t.Fatalf("curl line %d: body %s", i+1, body)
			}
		}
	}

	// The deleted threads and the emptied project are gone; the rest stays.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, st.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	gone := []string{localstack.ThreadID, localstack.SecondThreadID, localstack.LastThreadID, localstack.SubAgentThreadID, localstack.NotesThreadID}
	if n := count(`SELECT count(*) FROM public.threads WHERE thread_id = ANY($1::uuid[])`, gone); n != 0 {
		t.Errorf("%d deleted threads still there", n)
	}
	if n := count(`SELECT count(*) FROM public.threads WHERE thread_id = $1`, localstack.OtherThreadID); n != 1 {
		t.Error("the Other Team's thread was touched")
	}
	if n := count(`SELECT count(*) FROM public.projects WHERE project_id = ANY($1::uuid[])`, []string{localstack.SandboxProjectID, localstack.NotesProjectID}); n != 0 {
		t.Error("an emptied project is still there")
	}

	// The worker took the teardown from the queue to the Daytona stand-in.
	testenv.WaitFor(t, 10*time.Second, "a teardown at the Daytona stand-in", func() bool { return len(st.Daytona.Teardowns()) > 0 })
	if td := st.Daytona.Teardowns(); len(td) != 1 || td[0] != localstack.SandboxID {
		t.Fatalf("Daytona stand-in got teardowns %v, want [%s]", td, localstack.SandboxID)
	}
	testenv.WaitFor(t, 10*time.Second, "the sandbox resource to be marked deleted", func() bool {
		return count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'deleted'`, localstack.SandboxResourceID) == 1
	})
	if n := count(`SELECT count(*) FROM thread_delete.outbox WHERE status = 'done' AND payload->>'sandbox_id' = $1`, localstack.SandboxID); n != 1 {
		t.Errorf("%d done teardown rows, want 1", n)
	}
	if !strings.Contains(logs.String(), "DEV DAYTONA STAND-IN: DELETE /sandbox/"+localstack.SandboxID) {
		t.Error("the stand-in did not log the teardown")
	}

	// Ctrl-C: everything stops, the emulator included.
	fauxqsPID := st.Fauxqs.PID()
	if err := stop(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	if err := syscall.Kill(fauxqsPID, 0); err != syscall.ESRCH {
		t.Errorf("fauxqs (pid %d) still running after the stop: %v", fauxqsPID, err)
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(st.APIURL, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("the API still accepts connections after the stop")
	}

	// Redis followed the owning account: 5 threads and 2 projects at the
	// start, all of them deleted.
	counters, err := rdb.MGet(ctx, "thread_count:"+localstack.DemoAccountID, "project_count:"+localstack.DemoAccountID).Result()
	if err != nil || fmt.Sprint(counters) != "[0 0]" {
		t.Errorf("counters %v (%v), want [0 0]", counters, err)
	}
	if n, _ := rdb.Exists(ctx, "message_history:"+localstack.ThreadID, "cache:account_state:"+localstack.DemoAccountID).Result(); n != 0 {
		t.Errorf("%d caches of deleted data left", n)
	}

	// Reseeding (every start does it) brings the demo data back, once.
	for range 2 {
		if _, err := localstack.SeedDemo(ctx, st.DatabaseURL, rdb); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(`SELECT count(*) FROM public.threads WHERE account_id = ANY($1::uuid[])`, []string{localstack.DemoAccountID, localstack.OtherAccountID}); n != localstack.DemoThreadCount() {
		t.Errorf("%d demo threads after reseeding, want %d", n, localstack.DemoThreadCount())
	}
	if n := count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'active'`, localstack.SandboxResourceID); n != 1 {
		t.Error("the sandbox resource is not active again after reseeding")
	}
	if n := count(`SELECT count(*) FROM thread_delete.outbox`); n != 0 {
		t.Errorf("%d outbox rows of demo accounts survived the reseed", n)
	}
	if counters, _ := rdb.MGet(ctx, "thread_count:"+localstack.DemoAccountID, "project_count:"+localstack.DemoAccountID).Result(); fmt.Sprint(counters) != "[5 2]" {
		t.Errorf("counters after reseeding %v, want [5 2]", counters)
	}
}

// TestDevStackCORS is a browser page on http://localhost:5173 calling the
// dev API (DEV_CORS_ALLOWED_ORIGINS=http://localhost:5173), and one on an
// origin not allowed; the queues it created are the template's.
func TestDevStackCORS(t *testing.T) {
	tc := templateCors(t)
	const page = "http://localhost:5173"
	st, _, _, _, _ := startStack(t, func(o *Options) { o.CORSOrigins = page })
	checkQueuesMirrorTemplate(t, testenv.SQSClient(st.SQSEndpoint), st.Queues)

	owner, err := localstack.Token(localstack.JWTSecret, localstack.OwnerUserID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, origin string, headers ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, st.APIURL+"/threads/"+localstack.ThreadID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	corsHeaders := func(h http.Header) map[string]string {
		got := map[string]string{}
		for k, v := range h {
			if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
				got[k] = strings.Join(v, ", ")
			}
		}
		return got
	}
	expect := func(what string, got, want map[string]string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: CORS headers\n got %v\nwant %v", what, got, want)
		}
	}
	join := func(s []string) string { return strings.Join(s, ",") }

	// fetch(api + '/threads/' + id, {method: 'DELETE', headers: {Authorization: 'Bearer …'}})
	resp, body := do("OPTIONS", page, "Access-Control-Request-Method", "DELETE", "Access-Control-Request-Headers", "authorization")
	if resp.StatusCode != 204 || body != "" {
		t.Fatalf("preflight: %d %q, want 204 without a body", resp.StatusCode, body)
	}
	expect("preflight", corsHeaders(resp.Header), map[string]string{
		"Access-Control-Allow-Origin":  page,
		"Access-Control-Allow-Methods": join(tc.AllowMethods),
		"Access-Control-Allow-Headers": join(tc.AllowHeaders),
		"Access-Control-Max-Age":       strconv.Itoa(tc.MaxAge),
		"Vary":                         "Origin",
	})
	resp, _ = do("OPTIONS", "http://evil.example", "Access-Control-Request-Method", "DELETE", "Access-Control-Request-Headers", "authorization")
	if resp.StatusCode != 204 {
		t.Fatalf("refused preflight: status %d, want 204", resp.StatusCode)
	}
	expect("refused preflight", corsHeaders(resp.Header), map[string]string{})

	// The page can read a 401's WWW-Authenticate; another origin gets the
	// same answer without CORS headers, which its browser withholds.
	resp, body = do("DELETE", page)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != "Bearer" {
		t.Fatalf("no credentials: %d %s", resp.StatusCode, body)
	}
	expose := map[string]string{"Access-Control-Allow-Origin": page, "Access-Control-Expose-Headers": join(tc.ExposeHeaders), "Vary": "Origin"}
	expect("401", corsHeaders(resp.Header), expose)
	resp, _ = do("DELETE", "http://evil.example")
	if resp.StatusCode != 401 {
		t.Fatalf("no credentials, other origin: status %d", resp.StatusCode)
	}
	expect("401 to another origin", corsHeaders(resp.Header), map[string]string{})

	resp, body = do("DELETE", page, "Authorization", "Bearer "+owner)
	if resp.StatusCode != 200 || !strings.Contains(body, `"Thread deleted successfully"`) {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	expect("200", corsHeaders(resp.Header), expose)
}
