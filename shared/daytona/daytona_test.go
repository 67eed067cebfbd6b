package daytona_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/daytona"
)

const apiKey = "dtn_secret_key_0123456789"

func TestDeleteSandbox(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(s *localstack.Daytona, id string)
		key       string
		wantErr   string // "": nil; "retryable"/"permanent": that kind
		wantCode  int
		wantGone  bool
		wantCalls int
	}{
		{"known sandbox is destroyed", func(s *localstack.Daytona, id string) { s.AddSandbox(id) }, apiKey, "", 0, true, 1},
		{"unknown sandbox is already gone", func(s *localstack.Daytona, id string) {}, apiKey, "", 0, true, 1},
		{"409 while the sandbox is in transition", func(s *localstack.Daytona, id string) { s.AddSandbox(id); s.FailNext(id, 1, 409) }, apiKey, "retryable", 409, false, 1},
		{"429 rate limited", func(s *localstack.Daytona, id string) { s.AddSandbox(id); s.FailNext(id, 1, 429) }, apiKey, "retryable", 429, false, 1},
		{"500", func(s *localstack.Daytona, id string) { s.AddSandbox(id); s.FailNext(id, 1, 500) }, apiKey, "retryable", 500, false, 1},
		{"503", func(s *localstack.Daytona, id string) { s.AddSandbox(id); s.FailNext(id, 1, 503) }, apiKey, "retryable", 503, false, 1},
		{"timeout", func(s *localstack.Daytona, id string) { s.AddSandbox(id); s.HangNext(id, 1, 5*time.Second) }, apiKey, "retryable", 0, false, 1},
		{"wrong API key", func(s *localstack.Daytona, id string) { s.AddSandbox(id) }, "wrong-key", "permanent", 401, false, 1},
		{"403", func(s *localstack.Daytona, id string) { s.AddSandbox(id); s.FailNext(id, 1, 403) }, apiKey, "permanent", 403, false, 1},
		{"400", func(s *localstack.Daytona, id string) { s.AddSandbox(id); s.FailNext(id, 1, 400) }, apiKey, "permanent", 400, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.Daytona(t, apiKey)
			id := "sb-" + strings.ReplaceAll(tc.name, " ", "-")
			tc.setup(srv, id)
			c := daytona.New(srv.URL, tc.key, "")
			c.Timeout = 200 * time.Millisecond

			err := c.DeleteSandbox(context.Background(), id)
			switch tc.wantErr {
			case "":
				if err != nil {
					t.Fatalf("error %v", err)
				}
			case "retryable":
				var re *daytona.RetryableError
				if !errors.As(err, &re) || re.Status != tc.wantCode || !daytona.IsRetryable(err) {
					t.Fatalf("error %#v, want retryable %d", err, tc.wantCode)
				}
				if !strings.Contains(err.Error(), "retryable") {
					t.Fatalf("error %q does not say it is retryable", err)
				}
			case "permanent":
				var pe *daytona.PermanentError
				if !errors.As(err, &pe) || pe.Status != tc.wantCode || daytona.IsRetryable(err) {
					t.Fatalf("error %#v, want permanent %d", err, tc.wantCode)
				}
			}
			if err != nil {
				if strings.Contains(err.Error(), apiKey) || strings.Contains(err.Error(), tc.key) {
					t.Fatalf("error leaks the API key: %q", err)
				}
				if tc.wantCode != 0 && !strings.Contains(err.Error(), fmt.Sprintf("HTTP %d", tc.wantCode)) {
					t.Fatalf("error %q lacks the status", err)
				}
			}
			if gone := !srv.Exists(id); gone != tc.wantGone {
				t.Fatalf("sandbox gone = %v, want %v", gone, tc.wantGone)
			}
			if n := srv.Calls(id); n != tc.wantCalls {
				t.Fatalf("%d calls, want %d", n, tc.wantCalls)
			}
		})
	}
}

func TestDeleteSandboxRequest(t *testing.T) {
	srv := testenv.Daytona(t, apiKey)
	id := "odd id/with?chars"
	srv.AddSandbox(id)
	c := daytona.New(srv.URL+"/", apiKey, "org-42")
	if err := c.DeleteSandbox(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if srv.Exists(id) || srv.Calls(id) != 1 {
		t.Fatalf("path escaping: the server did not see sandbox %q", id)
	}
	h := srv.LastHeader()
	if h.Get("Authorization") != "Bearer "+apiKey || h.Get("X-Daytona-Organization-ID") != "org-42" {
		t.Fatalf("headers %v", h)
	}
	// Without an organization the header is not sent at all.
	srv.AddSandbox("sb-2")
	if err := daytona.New(srv.URL, apiKey, "").DeleteSandbox(context.Background(), "sb-2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := srv.LastHeader()["X-Daytona-Organization-Id"]; ok {
		t.Fatal("empty organization header sent")
	}
	// A second delete of the same sandbox is a 404: done.
	if err := c.DeleteSandbox(context.Background(), id); err != nil || srv.Calls(id) != 2 {
		t.Fatalf("second delete: %v, %d calls", err, srv.Calls(id))
	}
}

func TestDeleteSandboxScriptThenSucceed(t *testing.T) {
	srv := testenv.Daytona(t, apiKey)
	srv.AddSandbox("sb")
	srv.FailNext("sb", 2, 500)
	c := daytona.New(srv.URL, apiKey, "")
	for i, wantOK := range []bool{false, false, true} {
		err := c.DeleteSandbox(context.Background(), "sb")
		if (err == nil) != wantOK {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if srv.Calls("sb") != 3 || srv.TotalCalls() != 3 || srv.Exists("sb") {
		t.Fatalf("calls %d, exists %v", srv.Calls("sb"), srv.Exists("sb"))
	}
}

func TestDeleteSandboxTransportFailures(t *testing.T) {
	// Nothing listens: a retryable error without a status.
	err := daytona.New("http://127.0.0.1:1", apiKey, "").DeleteSandbox(context.Background(), "sb")
	var re *daytona.RetryableError
	if !errors.As(err, &re) || re.Status != 0 {
		t.Fatalf("connection refused: %#v", err)
	}
	// A redirect is not followed (it would turn the DELETE into a GET).
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	}))
	defer redirect.Close()
	err = daytona.New(redirect.URL, apiKey, "").DeleteSandbox(context.Background(), "sb")
	var pe *daytona.PermanentError
	if !errors.As(err, &pe) || pe.Status != http.StatusFound {
		t.Fatalf("redirect: %#v", err)
	}
	// An error body that echoes the key does not leak it.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"message":"bad token ` + r.Header.Get("Authorization") + `"}`)) //nolint:errcheck
	}))
	defer echo.Close()
	err = daytona.New(echo.URL, apiKey, "").DeleteSandbox(context.Background(), "sb")
	if err == nil || strings.Contains(err.Error(), apiKey) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("echoed key: %v", err)
	}
	// An empty id is refused without a call.
	if err := daytona.New(echo.URL, apiKey, "").DeleteSandbox(context.Background(), ""); daytona.IsRetryable(err) {
		t.Fatalf("empty id: %v", err)
	}
}

func TestDeleteSandboxHonoursCallerDeadline(t *testing.T) {
	srv := testenv.Daytona(t, apiKey)
	srv.AddSandbox("sb")
	srv.HangNext("sb", 1, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := daytona.New(srv.URL, apiKey, "").DeleteSandbox(ctx, "sb")
	if !daytona.IsRetryable(err) || time.Since(start) > 2*time.Second {
		t.Fatalf("%v after %s", err, time.Since(start))
	}
}

// Only Daytona's own JSON not-found naming the sandbox means "already
// gone". Every other 404, and a 2xx that is not JSON, comes from something
// that is not Daytona's sandbox API — DAYTONA_SERVER_URL is wrong — and must
// fail, naming the setting, or every sandbox would be left running while its
// record says deleted.
func TestDeleteSandboxAnswerShapes(t *testing.T) {
	const id = "sb-7f3a"
	daytonaNotFound := func(msg string) string {
		return `{"statusCode":404,"source":"DAYTONA_API","code":"NOT_FOUND","message":"` + msg +
			`","error":"Not Found","path":"/api/sandbox/` + id + `","timestamp":"2026-01-01T00:00:00.000Z","method":"DELETE"}`
	}
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantDone    bool
		wantAnswer  string // in the error, when not done
	}{
		{"Daytona's not-found for the sandbox", 404, "application/json; charset=utf-8",
			daytonaNotFound("Sandbox with ID or name " + id + " not found"), true, ""},
		{"older Daytona's not-found by id", 404, "application/json; charset=utf-8",
			`{"statusCode":404,"timestamp":"2025-01-01T00:00:00.000Z","path":"/api/sandbox/` + id + `","error":"Not Found","message":"Sandbox with ID ` + id + ` not found"}`, true, ""},
		{"accepted: the sandbox, destroying", 200, "application/json; charset=utf-8",
			`{"id":"` + id + `","state":"destroying"}`, true, ""},
		{"accepted: empty body", 200, "", "", true, ""},
		{"accepted: 204", 204, "", "", true, ""},

		{"route not found behind Daytona's filter", 404, "application/json; charset=utf-8",
			daytonaNotFound("Cannot DELETE /api/v1/sandbox/" + id), false, `JSON "Cannot DELETE /api/v1/sandbox/` + id + `"`},
		{"route not found, plain NestJS", 404, "application/json; charset=utf-8",
			`{"message":"Cannot DELETE /sandbox/` + id + `","error":"Not Found","statusCode":404}`, false, "Cannot DELETE"},
		{"not-found naming another sandbox", 404, "application/json",
			daytonaNotFound("Sandbox with ID or name sb-other not found"), false, "sb-other"},
		{"not-found naming a prefix of the id", 404, "application/json",
			daytonaNotFound("Sandbox with ID or name sb-7f not found"), false, "sb-7f"},
		{"not-found without the sandbox", 404, "application/json",
			`{"statusCode":404,"message":"Sandbox not found","error":"Not Found"}`, false, "Sandbox not found"},
		{"right message, other code", 404, "application/json",
			`{"statusCode":404,"code":"SNAPSHOT_NOT_FOUND","message":"Sandbox with ID or name ` + id + ` not found"}`, false, "JSON"},
		{"right message, statusCode missing", 404, "application/json",
			`{"message":"Sandbox with ID or name ` + id + ` not found"}`, false, "JSON"},
		{"HTML 404 page", 404, "text/html", "<html><body><h1>404 Not Found</h1></body></html>", false, "an HTML page"},
		{"empty 404", 404, "", "", false, "empty body"},
		{"plain-text 404", 404, "text/plain; charset=utf-8", "404 page not found\n", false, "a text/plain body"},
		{"200 HTML: Daytona's dashboard", 200, "text/html; charset=UTF-8", "<!doctype html><html></html>", false, "an HTML page"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				if tc.contentType != "" {
					w.Header().Set("Content-Type", tc.contentType)
				}
				w.WriteHeader(tc.status)
				w.Write([]byte(tc.body)) //nolint:errcheck
			}))
			defer srv.Close()

			err := daytona.New(srv.URL, apiKey, "").DeleteSandbox(context.Background(), id)
			if calls != 1 {
				t.Fatalf("%d calls", calls)
			}
			if tc.wantDone {
				if err != nil {
					t.Fatalf("error %v, want done", err)
				}
				return
			}
			var se *daytona.ServerURLError
			if !errors.As(err, &se) || se.Status != tc.status || se.SandboxID != id {
				t.Fatalf("error %#v, want a ServerURLError for HTTP %d", err, tc.status)
			}
			if daytona.IsRetryable(err) {
				t.Fatal("a wrong server URL is reported retryable")
			}
			for _, want := range []string{"DAYTONA_SERVER_URL", srv.URL, tc.wantAnswer, fmt.Sprintf("HTTP %d", tc.status)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// The stand-in answers like the Daytona server for each base URL an
// operator might configure; only the right one deletes, and no wrong one
// is taken for "already gone".
func TestDeleteSandboxServerURLs(t *testing.T) {
	srv := testenv.Daytona(t, apiKey)
	tests := []struct {
		name       string
		base       string
		wantAnswer string // "": deleted
	}{
		{"the API base", srv.URL, ""},
		{"the API base with a trailing slash", srv.URL + "/", ""},
		{"without /api: the dashboard", srv.Origin, "HTTP 200 is not Daytona's answer (an HTML page)"},
		{"a wrong path under /api", srv.URL + "/v1", `HTTP 404 is not Daytona's answer (JSON "Cannot DELETE /api/v1/sandbox/`},
		{"/api twice", srv.URL + "/api", `(JSON "Cannot DELETE /api/api/sandbox/`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "sb-" + strings.ReplaceAll(tc.name, " ", "-")
			srv.AddSandbox(id)
			err := daytona.New(tc.base, apiKey, "").DeleteSandbox(context.Background(), id)
			if tc.wantAnswer == "" {
				if err != nil || srv.Exists(id) || srv.Calls(id) != 1 {
					t.Fatalf("error %v, exists %v, %d calls", err, srv.Exists(id), srv.Calls(id))
				}
				// Deleting it again gets Daytona's not-found: done as well.
				if err := daytona.New(tc.base, apiKey, "").DeleteSandbox(context.Background(), id); err != nil || srv.Calls(id) != 2 {
					t.Fatalf("second delete: %v, %d calls", err, srv.Calls(id))
				}
				return
			}
			var se *daytona.ServerURLError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.wantAnswer) || !strings.Contains(err.Error(), "DAYTONA_SERVER_URL") {
				t.Fatalf("error %v, want a ServerURLError with %q", err, tc.wantAnswer)
			}
			if !srv.Exists(id) || srv.Calls(id) != 0 {
				t.Fatalf("the wrong URL reached the sandbox: exists %v, %d calls", srv.Exists(id), srv.Calls(id))
			}
		})
	}
}

// The server URL in the error hides a password it may carry.
func TestServerURLErrorRedactsPassword(t *testing.T) {
	srv := testenv.Daytona(t, apiKey)
	base := strings.Replace(srv.Origin, "http://", "http://user:hunter2@", 1)
	err := daytona.New(base, apiKey, "").DeleteSandbox(context.Background(), "sb")
	var se *daytona.ServerURLError
	if !errors.As(err, &se) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v", err)
	}
}
