// Package daytonatest is an in-process stand-in for the Daytona API's
// sandbox delete, following its documented behaviour, with failures a test
// can script per sandbox.
//
//	DELETE /sandbox/{id}   without "Authorization: Bearer <key>"  → 401
//	                       unknown id                              → 404 {"statusCode":404,"message":...,"error":"Not Found"}
//	                       known id                                → 200 the sandbox, "state":"destroying"; then forgotten
package daytonatest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Server is the stand-in. Create it with New.
type Server struct {
	*httptest.Server
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
	mux.HandleFunc("DELETE /sandbox/{id}", s.delete)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Cannot %s %s", r.Method, r.URL.Path))
	})
	s.Server = httptest.NewServer(mux)
	tb.Cleanup(s.Close)
	return s
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
		writeError(w, http.StatusUnauthorized, "Invalid API key")
		return
	}
	if step.Status != 0 {
		writeError(w, step.Status, http.StatusText(step.Status))
		return
	}

	s.mu.Lock()
	known := s.sandboxes[id]
	delete(s.sandboxes, id)
	s.mu.Unlock()
	if !known {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Sandbox with ID or name %s not found", id))
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

// writeError answers in the shape of Daytona's (NestJS) error bodies.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{
		"statusCode": status,
		"message":    msg,
		"error":      http.StatusText(status),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck
}
