package localstack

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Daytona is a stand-in for the Daytona API's sandbox delete, answering the
// way the Daytona server does (its NestJS API under the /api prefix, its
// dashboard everywhere else), with failures a test can script per sandbox.
// It destroys nothing.
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
type Daytona struct {
	// URL is the API's base URL, like https://app.daytona.io/api: what
	// DAYTONA_SERVER_URL must be.
	URL string
	// Origin is the server's root, where Daytona serves its dashboard: a
	// DAYTONA_SERVER_URL missing "/api".
	Origin string
	APIKey string

	anySandbox bool
	log        *slog.Logger
	srv        *http.Server

	mu        sync.Mutex
	sandboxes map[string]bool // known (AddSandbox)
	gone      map[string]bool // deleted once
	calls     map[string]int
	script    map[string][]DaytonaStep
	headers   http.Header
	teardowns []string // sandbox ids whose delete was accepted, in order
}

// DaytonaOptions configure the stand-in.
type DaytonaOptions struct {
	APIKey string
	// AnySandbox makes every sandbox exist until its first delete: the dev
	// stack has no way to create sandboxes, yet its teardowns should be
	// answered as Daytona answers a real one. Otherwise only the ids given
	// to AddSandbox exist.
	AnySandbox bool
	// Log, when set, gets a line per call, loud enough for a developer to
	// see each teardown the cleanup worker performed.
	Log *slog.Logger
}

// DaytonaStep is one scripted answer to the next call for a sandbox.
type DaytonaStep struct {
	// Status is answered instead of the normal behaviour (0: normal).
	Status int
	// Delay holds the answer back (or until the client gives up); with
	// Status 0 the normal behaviour follows if the client is still there.
	Delay time.Duration
}

// StartDaytona serves the stand-in on a free loopback port until Close.
func StartDaytona(o DaytonaOptions) (*Daytona, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("daytona stand-in: %w", err)
	}
	d := &Daytona{
		Origin:     "http://" + ln.Addr().String(),
		APIKey:     o.APIKey,
		anySandbox: o.AnySandbox,
		log:        o.Log,
		sandboxes:  map[string]bool{},
		gone:       map[string]bool{},
		calls:      map[string]int{},
		script:     map[string][]DaytonaStep{},
	}
	d.URL = d.Origin + "/api"
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /api/sandbox/{id}", d.delete)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		d.log.Warn("DEV DAYTONA STAND-IN: unexpected call", "method", r.Method, "path", r.URL.Path)
		writeDaytonaError(w, r, http.StatusNotFound, fmt.Sprintf("Cannot %s %s", r.Method, r.URL.RequestURI()))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.log.Warn("DEV DAYTONA STAND-IN: call outside /api (DAYTONA_SERVER_URL without /api?)", "method", r.Method, "path", r.URL.Path)
		dashboard(w)
	})
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go d.srv.Serve(ln) //nolint:errcheck // ends with Close
	return d, nil
}

// Close stops the server: it waits up to two seconds for calls in flight.
func (d *Daytona) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := d.srv.Shutdown(ctx); err != nil {
		return d.srv.Close()
	}
	return nil
}

// dashboard answers like Daytona's filter for a path outside /api/: the
// single-page app's index.html, status 200, whatever the method.
func dashboard(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, `<!doctype html><html lang="en"><head><meta charset="UTF-8"><title>Daytona</title></head>`+
		`<body><div id="root"></div></body></html>`)
}

// AddSandbox makes ids known (existing sandboxes).
func (d *Daytona) AddSandbox(ids ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		d.sandboxes[id] = true
		delete(d.gone, id)
	}
}

// Exists reports whether sandbox id is still known.
func (d *Daytona) Exists(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.exists(id)
}

func (d *Daytona) exists(id string) bool {
	return d.sandboxes[id] || (d.anySandbox && !d.gone[id])
}

// Script queues answers for the next calls on sandbox id, in order.
func (d *Daytona) Script(id string, steps ...DaytonaStep) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.script[id] = append(d.script[id], steps...)
}

// FailNext makes the next n calls on sandbox id answer status.
func (d *Daytona) FailNext(id string, n, status int) {
	for range n {
		d.Script(id, DaytonaStep{Status: status})
	}
}

// HangNext makes the next n calls on sandbox id wait for delay before
// answering normally (a client with a shorter timeout sees a timeout).
func (d *Daytona) HangNext(id string, n int, delay time.Duration) {
	for range n {
		d.Script(id, DaytonaStep{Delay: delay})
	}
}

// Calls returns how many DELETE calls reached sandbox id, whatever their
// outcome (authorised or not).
func (d *Daytona) Calls(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[id]
}

// TotalCalls returns the number of DELETE calls on any sandbox.
func (d *Daytona) TotalCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.calls {
		n += c
	}
	return n
}

// LastHeader returns the headers of the latest DELETE call.
func (d *Daytona) LastHeader() http.Header {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.headers.Clone()
}

// Teardowns returns the sandbox ids whose delete was accepted, in order.
func (d *Daytona) Teardowns() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.teardowns...)
}

func (d *Daytona) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d.mu.Lock()
	d.calls[id]++
	d.headers = r.Header.Clone()
	var step DaytonaStep
	if q := d.script[id]; len(q) > 0 {
		step, d.script[id] = q[0], q[1:]
	}
	d.mu.Unlock()

	if step.Delay > 0 {
		select {
		case <-time.After(step.Delay):
		case <-r.Context().Done():
			return // the client gave up; nothing happened
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+d.APIKey {
		d.log.Warn("DEV DAYTONA STAND-IN: DELETE refused, wrong API key", "sandbox_id", id)
		writeDaytonaError(w, r, http.StatusUnauthorized, "Invalid API key")
		return
	}
	if step.Status != 0 {
		writeDaytonaError(w, r, step.Status, http.StatusText(step.Status))
		return
	}

	d.mu.Lock()
	known := d.exists(id)
	delete(d.sandboxes, id)
	d.gone[id] = true
	if known {
		d.teardowns = append(d.teardowns, id)
	}
	d.mu.Unlock()
	if !known {
		d.log.Info("DEV DAYTONA STAND-IN: DELETE /sandbox/"+id+" → 404 (no such sandbox, or already gone)", "sandbox_id", id)
		writeDaytonaError(w, r, http.StatusNotFound, fmt.Sprintf("Sandbox with ID or name %s not found", id))
		return
	}
	d.log.Info("DEV DAYTONA STAND-IN: DELETE /sandbox/"+id+" → 200 (a real Daytona would destroy it now)",
		"sandbox_id", id, "organization", r.Header.Get("X-Daytona-Organization-ID"))
	now := time.Now().UTC().Format(time.RFC3339)
	writeDaytonaJSON(w, http.StatusOK, map[string]any{
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

// daytonaCodes is Daytona's HTTP_STATUS_TO_API_CODE (apps/api/src/common/
// errors/api-error-code.enum.ts); other statuses get INTERNAL_SERVER_ERROR.
var daytonaCodes = map[int]string{
	400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
	409: "CONFLICT", 429: "RATE_LIMIT_EXCEEDED", 500: "INTERNAL_SERVER_ERROR",
}

// writeDaytonaError answers with the envelope of Daytona's
// AllExceptionsFilter.
func writeDaytonaError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	code, ok := daytonaCodes[status]
	if !ok {
		code = "INTERNAL_SERVER_ERROR"
	}
	writeDaytonaJSON(w, status, map[string]any{
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

func writeDaytonaJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) //nolint:errcheck
}
