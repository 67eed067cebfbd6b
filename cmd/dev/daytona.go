package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// FakeDaytona is the dev stack's stand-in for the Daytona API. It destroys
// nothing: it logs every sandbox delete it receives, loudly, so that a
// developer sees the teardown the cleanup worker performed. It answers the
// way Daytona documents: 200 with the sandbox "destroying" the first time,
// 404 for a sandbox it was already asked to delete, 401 for a wrong key.
type FakeDaytona struct {
	URL string // base URL, like https://app.daytona.io/api

	apiKey string
	log    *slog.Logger
	srv    *http.Server

	mu        sync.Mutex
	teardowns []string // sandbox ids accepted, in order
}

// StartFakeDaytona serves the stand-in on a free loopback port.
func StartFakeDaytona(apiKey string, log *slog.Logger) (*FakeDaytona, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("daytona stand-in: %w", err)
	}
	d := &FakeDaytona{URL: "http://" + ln.Addr().String() + "/api", apiKey: apiKey, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("DELETE /api/sandbox/{id}", d.deleteSandbox)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		d.log.Warn("DEV DAYTONA STAND-IN: unexpected call", "method", r.Method, "path", r.URL.Path)
		writeDaytona(w, http.StatusNotFound, daytonaError(http.StatusNotFound, "Cannot "+r.Method+" "+r.URL.Path))
	})
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go d.srv.Serve(ln) //nolint:errcheck // ends with Close
	return d, nil
}

// Teardowns returns the sandbox ids whose delete was accepted.
func (d *FakeDaytona) Teardowns() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.teardowns...)
}

// Close stops the server.
func (d *FakeDaytona) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return d.srv.Shutdown(ctx)
}

func (d *FakeDaytona) deleteSandbox(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if r.Header.Get("Authorization") != "Bearer "+d.apiKey {
		d.log.Warn("DEV DAYTONA STAND-IN: DELETE refused, wrong API key", "sandbox_id", id)
		writeDaytona(w, http.StatusUnauthorized, daytonaError(http.StatusUnauthorized, "Invalid API key"))
		return
	}
	d.mu.Lock()
	seen := false
	for _, t := range d.teardowns {
		seen = seen || t == id
	}
	if !seen {
		d.teardowns = append(d.teardowns, id)
	}
	d.mu.Unlock()
	if seen {
		d.log.Info("DEV DAYTONA STAND-IN: DELETE /sandbox/"+id+" again → 404 (already gone)", "sandbox_id", id)
		writeDaytona(w, http.StatusNotFound, daytonaError(http.StatusNotFound, "Sandbox with ID or name "+id+" not found"))
		return
	}
	d.log.Info("DEV DAYTONA STAND-IN: DELETE /sandbox/"+id+" → 200 (a real Daytona would destroy it now)",
		"sandbox_id", id, "organization", r.Header.Get("X-Daytona-Organization-ID"))
	now := time.Now().UTC().Format(time.RFC3339)
	writeDaytona(w, http.StatusOK, map[string]any{
		"id": id, "name": id, "state": "destroying", "desiredState": "destroyed",
		"organizationId": r.Header.Get("X-Daytona-Organization-ID"), "createdAt": now, "updatedAt": now,
	})
}

// daytonaError is the shape of Daytona's (NestJS) error bodies.
func daytonaError(status int, msg string) map[string]any {
	return map[string]any{"statusCode": status, "message": msg, "error": http.StatusText(status)}
}

func writeDaytona(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
