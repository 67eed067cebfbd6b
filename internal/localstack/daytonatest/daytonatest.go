// Package daytonatest is an in-process stand-in for the Daytona API's
// sandbox delete, answering the way the Daytona server does (its NestJS API
// under the /api prefix, its dashboard everywhere else), with failures a
// test can script per sandbox.
//
//	DELETE /api/sandbox/{id}  without "Authorization: Bearer <key>" → 401
//	                          unknown id  → 404 {"statusCode":404,"source":"DAYTONA_API","code":"NOT_FOUND",
//	                                             "message":"Sandbox with ID or name {id} not found",...}
//	                          known id    → 200 the sandbox, "state":"destroying"; then forgotten
//	any other /api/… route                → 404 {..."message":"Cannot DELETE /api/…","error":"Not Found"...}
//	any path outside /api/                → 200 text/html: the dashboard's index.html
//
// These are the answers of Daytona's source (github.com/daytonaio/daytona,
// apps/api): the sandbox access guard throws NotFoundException(`Sandbox
// with ID or name ${sandboxIdOrName} not found`); NestJS throws
// NotFoundException(`Cannot ${method} ${url}`) for a path no route matches;
// and the global AllExceptionsFilter renders both as the JSON envelope
// above, except that a not-found outside /api/ is answered with the
// dashboard's index.html (status 200). So a DAYTONA_SERVER_URL without
// "/api" gets HTML, and one with a wrong path under /api gets "Cannot …".
package daytonatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is the stand-in. Create it with New.
type Server struct {
	*httptest.Server
	// URL is the API's base URL, like https://app.daytona.io/api: what
	// DAYTONA_SERVER_URL must be. It shadows the embedded server's URL,
	// which is Origin.
	URL string
	// Origin is the server's root, where Daytona serves its dashboard: a
	// DAYTONA_SERVER_URL missing "/api".
	Origin string
	APIKey string

	mu        sync.Mutex
	sandboxes map[string]bool
	calls     map[string]int
	script    map[string][]Step
	headers   http.Header
}

// Step is one scripted answer to the next call for a sandbox.
type Step struct {
	// Status is answered instead of the normal behaviour (0: normal).
	Status int
	// Delay holds the answer back (or until the client gives up); with
	// Status 0 the normal behaviour follows if the client is still there.
	Delay time.Duration
}

// New starts a server that accepts apiKey and stops it when the test ends.
func New(tb testing.TB, apiKey string) *Server {
	s := &Server{
		APIKey:    apiKey,
		sandboxes: map[string]bool{},
		calls:     map[string]int{},
		script:    map[string][]Step{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /api/sandbox/{id}", s.delete)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("Cannot %s %s", r.Method, r.URL.RequestURI()))
	})
	mux.HandleFunc("/", dashboard)
	s.Server = httptest.NewServer(mux)
	s.Origin = s.Server.URL
	s.URL = s.Origin + "/api"
	tb.Cleanup(s.Close)
	return s
}

// dashboard answers like Daytona's filter for a path outside /api/: the
// single-page app's index.html, status 200, whatever the method.
func dashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, `<!doctype html><html lang="en"><head><meta charset="UTF-8"><title>Daytona</title></head>`+
		`<body><div id="root"></div></body></html>`)
}

// AddSandbox makes ids known (existing sandboxes).
func (s *Server) AddSandbox(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.sandboxes[id] = true
	}
}

// Exists reports whether sandbox id is still known.
func (s *Server) Exists(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sandboxes[id]
}

// Script queues answers for the next calls on sandbox id, in order.
func (s *Server) Script(id string, steps ...Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script[id] = append(s.script[id], steps...)
}

// FailNext makes the next n calls on sandbox id answer status.
func (s *Server) FailNext(id string, n, status int) {
	for range n {
		s.Script(id, Step{Status: status})
	}
}

// HangNext makes the next n calls on sandbox id wait d before answering
// normally (a client with a shorter timeout sees a timeout).
func (s *Server) HangNext(id string, n int, d time.Duration) {
	for range n {
		s.Script(id, Step{Delay: d})
	}
}

// Calls returns how many DELETE calls reached sandbox id, whatever their
// outcome (authorised or not).
func (s *Server) Calls(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

// TotalCalls returns the number of DELETE calls on any sandbox.
func (s *Server) TotalCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		n += c
	}
	return n
}

// LastHeader returns the headers of the latest DELETE call.
func (s *Server) LastHeader() http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.headers.Clone()
}

func (s *Server) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	s.calls[id]++
	s.headers = r.Header.Clone()
	var step Step
	if q := s.script[id]; len(q) > 0 {
		step, s.script[id] = q[0], q[1:]
	}
	s.mu.Unlock()

	if step.Delay > 0 {
		select {
		case <-time.After(step.Delay):
		case <-r.Context().Done():
			return // the client gave up; nothing happened
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+s.APIKey {
		writeError(w, r, http.StatusUnauthorized, "Invalid API key")
		return
	}
	if step.Status != 0 {
		writeError(w, r, step.Status, http.StatusText(step.Status))
		return
	}

	s.mu.Lock()
	known := s.sandboxes[id]
	delete(s.sandboxes, id)
	s.mu.Unlock()
	if !known {
		writeError(w, r, http.StatusNotFound, fmt.Sprintf("Sandbox with ID or name %s not found", id))
		return
	}
	now := time.Now().UTC().Format(time.RFC3339)
	writeJSON(w, http.StatusOK, map[string]any{
		"id":             id,
		"organizationId": r.Header.Get("X-Daytona-Organization-ID"),
		"name":           id,
		"user":           "daytona",
		"env":            map[string]string{},
		"labels":         map[string]string{},
		"public":         false,
		"target":         "us",
		"cpu":            1,
		"gpu":            0,
		"memory":         1,
		"disk":           3,
		"state":          "destroying",
		"desiredState":   "destroyed",
		"createdAt":      now,
		"updatedAt":      now,
	})
}

// apiCodes is Daytona's HTTP_STATUS_TO_API_CODE (apps/api/src/common/errors/
// api-error-code.enum.ts); other statuses get INTERNAL_SERVER_ERROR.
var apiCodes = map[int]string{
	400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
	409: "CONFLICT", 429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_SERVER_ERROR",
}

// writeError answers with the envelope of Daytona's AllExceptionsFilter.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	code, ok := apiCodes[status]
	if !ok {
		code = "INTERNAL_SERVER_ERROR"
	}
	writeJSON(w, status, map[string]any{
		"statusCode": status,
		"source":     "DAYTONA_API",
		"code":       code,
		"message":    msg,
		"error":      http.StatusText(status),
		"path":       r.URL.RequestURI(),
		"timestamp":  time.Now().UTC().Format("2006-01-02T15:04:05.000Z"),
		"method":     strings.ToUpper(r.Method),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck
}
