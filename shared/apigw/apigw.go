// Package apigw adapts API Gateway HTTP API (payload 2.0) events to the
// threads domain: it reads the credentials and the path, calls the Deleter,
// and maps every outcome to the status, body and headers of the contract.
// It is the only place where errors become HTTP; internal error text never
// reaches a client.
package apigw

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/shared/auth"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// Authenticator turns request credentials into a caller; a failure is an
// *auth.Error (a 401) or auth.ErrUnavailable (a 503).
type Authenticator interface {
	Authenticate(ctx context.Context, authorization, apiKey string, apiKeyPresent bool) (threads.Caller, error)
}

// Deleter is the domain service.
type Deleter interface {
	Delete(ctx context.Context, req threads.Request) (threads.Result, error)
}

var _ Deleter = (*threads.Deleter)(nil)

// Handler serves DELETE /threads/{thread_id}.
type Handler struct {
	Auth    Authenticator
	Deleter Deleter
	Log     *slog.Logger
}

// Response details of the contract.
const (
	detailDeleted     = "Thread deleted successfully"
	detailInvalidID   = "Invalid thread ID"
	detailForbidden   = "Not authorized to modify this thread"
	detailNotFound    = "Thread not found"
	detailInvalidKey  = "Invalid API key"
	detailUnavailable = "Service temporarily unavailable, please retry"
	detailFailed      = "Failed to delete thread"
	detailNotAllowed  = "Method Not Allowed"
	retryAfterSeconds = "1"
)

// Handle is the Lambda handler. It never returns an error: every failure is
// an HTTP response, so API Gateway never answers a bare 502.
func (h *Handler) Handle(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	start := time.Now()
	rawID := threadIDFrom(ev)
	log := h.logger().With("thread_id", logSafe(rawID))

	resp, outcome, res := h.handle(ctx, ev, rawID)
	attrs := []any{"outcome", outcome, "status", resp.StatusCode, "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
	if outcome == "deleted" {
		attrs = append(attrs, "account_id", res.AccountID, "project_id", res.ProjectID,
			"threads_deleted", len(res.ThreadIDs), "messages_deleted", res.Messages, "runs_deleted", res.Runs,
			"project_deleted", res.ProjectDeleted, "db_round_trips", 1)
		if res.Teardown != nil {
			attrs = append(attrs, "teardown_job_id", res.Teardown.JobID, "teardown_queued", res.QueueErr == nil)
		}
		attrs = append(attrs, "cache_invalidated", res.CacheErr == nil)
	}
	log.InfoContext(ctx, "delete thread", attrs...)
	return resp, nil
}

func (h *Handler) handle(ctx context.Context, ev events.APIGatewayV2HTTPRequest, rawID string) (events.APIGatewayV2HTTPResponse, string, threads.Result) {
	if m := ev.RequestContext.HTTP.Method; m != "" && !strings.EqualFold(m, "DELETE") {
		r := detail(405, detailNotAllowed)
		r.Headers["Allow"] = "DELETE"
		return r, "method_not_allowed", threads.Result{}
	}
	// A malformed id is answered before any I/O (no JWKS fetch, no query).
	threadID, err := threads.ParseID(rawID)
	if err != nil {
		return detail(400, detailInvalidID), "invalid_id", threads.Result{}
	}

	authz, _ := header(ev.Headers, "authorization")
	apiKey, apiKeyPresent := header(ev.Headers, "x-api-key")
	caller, err := h.Auth.Authenticate(ctx, authz, apiKey, apiKeyPresent)
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return unauthorized(ae.Detail), "unauthenticated", threads.Result{}
		}
		if errors.Is(err, auth.ErrUnavailable) { // logged by auth
			return unavailable(), "unavailable", threads.Result{}
		}
		h.logger().ErrorContext(ctx, "authentication failed unexpectedly", "error", err.Error())
		return detail(500, detailFailed), "error", threads.Result{}
	}

	res, err := h.Deleter.Delete(ctx, threads.Request{ThreadID: threadID, Caller: caller})
	switch {
	case err == nil:
		return jsonResponse(200, map[string]string{"message": detailDeleted, "thread_id": rawID}), "deleted", res
	case errors.Is(err, threads.ErrInvalidID):
		return detail(400, detailInvalidID), "invalid_id", res
	case errors.Is(err, threads.ErrInvalidAPIKey):
		return unauthorized(detailInvalidKey), "unauthenticated", res
	case errors.Is(err, threads.ErrForbidden):
		return detail(403, detailForbidden), "forbidden", res
	case errors.Is(err, threads.ErrNotFound):
		return detail(404, detailNotFound), "not_found", res
	case errors.Is(err, threads.ErrUnavailable):
		h.logger().WarnContext(ctx, "database unavailable", "error", err.Error())
		return unavailable(), "unavailable", res
	default:
		h.logger().ErrorContext(ctx, "delete failed", "error", err.Error())
		return detail(500, detailFailed), "error", res
	}
}

// threadIDFrom reads {thread_id} from the path parameters, or from the raw
// path when the event has none (a proxy+ route or a hand-made event).
func threadIDFrom(ev events.APIGatewayV2HTTPRequest) string {
	if id, ok := ev.PathParameters["thread_id"]; ok {
		return id
	}
	p := strings.TrimSuffix(ev.RawPath, "/")
	if i := strings.LastIndex(p, "/threads/"); i >= 0 {
		return p[i+len("/threads/"):]
	}
	return ""
}

// header finds a header case-insensitively (API Gateway lower-cases names,
// hand-made events may not).
func header(h map[string]string, name string) (string, bool) {
	if v, ok := h[name]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func detail(status int, text string) events.APIGatewayV2HTTPResponse {
	return jsonResponse(status, map[string]string{"detail": text})
}

func unauthorized(text string) events.APIGatewayV2HTTPResponse {
	r := detail(401, text)
	r.Headers["WWW-Authenticate"] = "Bearer"
	return r
}

func unavailable() events.APIGatewayV2HTTPResponse {
	r := detail(503, detailUnavailable)
	r.Headers["Retry-After"] = retryAfterSeconds
	return r
}

func jsonResponse(status int, body map[string]string) events.APIGatewayV2HTTPResponse {
	b, _ := json.Marshal(body) // a map of strings always encodes
	return events.APIGatewayV2HTTPResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json"},
		Body:       string(b),
	}
}

// logSafe bounds what an attacker-chosen path puts into the logs.
func logSafe(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func (h *Handler) logger() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}
