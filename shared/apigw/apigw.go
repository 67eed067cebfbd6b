// Package apigw adapts API Gateway HTTP API (payload 2.0) events to the
// threads domain. One handler serves both routes of the delete-thread
// function, DELETE /threads/{thread_id} and POST /threads/bulk-delete: it
// reads the credentials, the path or the body, calls the Deleter, and maps
// every outcome to the status, body and headers of the contract. It is the
// only place where errors become HTTP; internal error text never reaches a
// client.
package apigw

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/shared/auth"
	"github.com/kortix-ai/thread-delete/shared/metrics"
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

// Handler serves the delete-thread function's routes.
type Handler struct {
	Auth    Authenticator
	Deleter Deleter
	Log     *slog.Logger
	// Namespace is the CloudWatch namespace of the metrics in the request's
	// log line (METRICS_NAMESPACE); empty means metrics.DefaultNamespace.
	Namespace string
}

// Response details of the contract.
const (
	detailDeleted        = "Thread deleted successfully"
	detailInvalidID      = "Invalid thread ID"
	detailInvalidBody    = "Invalid request body: expected {\"thread_ids\": [\"<uuid>\", ...]}"
	detailBulkSize       = "thread_ids must list 1 to 100 thread IDs"
	detailForbidden      = "Not authorized to modify this thread"
	detailNotFound       = "Thread not found"
	detailInvalidKey     = "Invalid API key"
	detailSessionRevoked = "Session expired or signed out"
	detailUnavailable    = "Service temporarily unavailable, please retry"
	detailFailed         = "Failed to delete thread"
	detailNotAllowed     = "Method Not Allowed"
	retryAfterSeconds    = "1"
)

// BulkPath is the path of the multi-select route.
const BulkPath = "/threads/bulk-delete"

// maxBulkBody bounds the body read for a bulk request: 100 ids take about
// 4 KiB; anything far larger is refused before it is decoded.
const maxBulkBody = 64 << 10

// Handle is the Lambda handler. It never returns an error: every failure is
// an HTTP response, so API Gateway never answers a bare 502.
func (h *Handler) Handle(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	start := time.Now()
	var (
		resp events.APIGatewayV2HTTPResponse
		ex   exchange
	)
	if isBulk(ev) {
		resp, ex = h.bulk(ctx, ev)
	} else {
		resp, ex = h.single(ctx, ev)
	}
	h.logExchange(ctx, start, resp, ex)
	return resp, nil
}

// exchange is what one request did, for its log line.
type exchange struct {
	endpoint  string // "delete" or "bulk_delete"
	outcome   string
	requested int
	threadID  string // single deletes: the id as sent (bounded)
	res       *threads.Result
}

// isBulk tells the routes apart: by route key when API Gateway set one,
// else by method and path (hand-made events, the dev server).
func isBulk(ev events.APIGatewayV2HTTPRequest) bool {
	if ev.RouteKey != "" && ev.RouteKey != "$default" {
		return strings.HasSuffix(ev.RouteKey, " "+BulkPath)
	}
	return strings.HasSuffix(strings.TrimSuffix(ev.RawPath, "/"), BulkPath) // after any stage prefix
}

func (h *Handler) single(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, exchange) {
	rawID := threadIDFrom(ev)
	ex := exchange{endpoint: "delete", requested: 1, threadID: logSafe(rawID)}
	if m := ev.RequestContext.HTTP.Method; m != "" && !strings.EqualFold(m, "DELETE") {
		return notAllowed("DELETE"), ex.with("method_not_allowed")
	}
	// A malformed id is answered before any I/O (no JWKS fetch, no query).
	id, err := threads.ParseID(rawID)
	if err != nil {
		return detail(400, detailInvalidID), ex.with("invalid_id")
	}
	res, resp, outcome := h.delete(ctx, ev, []string{id})
	ex.res = res
	if res == nil {
		return resp, ex.with(outcome)
	}
	switch o := res.Outcome(id); o {
	case threads.OutcomeDeleted:
		resp = jsonResponse(200, map[string]string{"message": detailDeleted, "thread_id": rawID})
	case threads.OutcomeForbidden:
		resp = detail(403, detailForbidden)
	default:
		resp = detail(404, detailNotFound)
	}
	return resp, ex.with(res.Outcome(id).String())
}

// bulkBody is the body of POST /threads/bulk-delete.
type bulkBody struct {
	ThreadIDs *[]string `json:"thread_ids"`
}

// bulkResult is the 200 body of a bulk delete: every requested id in
// exactly one list, once, in the form first sent.
type bulkResult struct {
	Deleted   []string `json:"deleted"`
	NotFound  []string `json:"not_found"`
	Forbidden []string `json:"forbidden"`
}

func (h *Handler) bulk(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, exchange) {
	ex := exchange{endpoint: "bulk_delete"}
	if m := ev.RequestContext.HTTP.Method; m != "" && !strings.EqualFold(m, "POST") {
		return notAllowed("POST"), ex.with("method_not_allowed")
	}
	// A bad body is answered before authentication, as a bad id is.
	sent, resp, ok := parseBulkBody(ev)
	ex.requested = len(sent)
	if !ok {
		return resp, ex.with("invalid_body")
	}
	// The first form sent of each id, in request order.
	var ids, forms []string
	seen := make(map[string]bool, len(sent))
	for _, s := range sent {
		id, _ := threads.ParseID(s) // validated by parseBulkBody
		if !seen[id] {
			seen[id] = true
			ids, forms = append(ids, id), append(forms, s)
		}
	}
	res, resp, outcome := h.delete(ctx, ev, ids)
	ex.res = res
	if res == nil {
		return resp, ex.with(outcome)
	}
	out := bulkResult{Deleted: []string{}, NotFound: []string{}, Forbidden: []string{}}
	for i, id := range ids {
		switch res.Outcome(id) {
		case threads.OutcomeDeleted:
			out.Deleted = append(out.Deleted, forms[i])
		case threads.OutcomeForbidden:
			out.Forbidden = append(out.Forbidden, forms[i])
		default:
			out.NotFound = append(out.NotFound, forms[i])
		}
	}
	return jsonResponse(200, out), ex.with("processed")
}

// parseBulkBody reads and validates the ids of a bulk request. On failure
// it returns the 400 to answer.
func parseBulkBody(ev events.APIGatewayV2HTTPRequest) ([]string, events.APIGatewayV2HTTPResponse, bool) {
	raw := []byte(ev.Body)
	if ev.IsBase64Encoded {
		if len(ev.Body) > base64.StdEncoding.EncodedLen(maxBulkBody) {
			return nil, detail(400, detailInvalidBody), false
		}
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, detail(400, detailInvalidBody), false
		}
		raw = b
	}
	if len(raw) > maxBulkBody {
		return nil, detail(400, detailInvalidBody), false
	}
	var body bulkBody
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&body); err != nil || body.ThreadIDs == nil {
		return nil, detail(400, detailInvalidBody), false
	}
	if _, err := dec.Token(); err != io.EOF { // exactly one JSON value
		return nil, detail(400, detailInvalidBody), false
	}
	ids := *body.ThreadIDs
	if len(ids) == 0 || len(ids) > threads.MaxBulk {
		return ids, detail(400, detailBulkSize), false
	}
	for _, id := range ids {
		if _, err := threads.ParseID(id); err != nil {
			return ids, detail(400, detailInvalidID), false
		}
	}
	return ids, events.APIGatewayV2HTTPResponse{}, true
}

// delete authenticates the request and runs the delete of ids. A nil
// result comes with the error response to answer and its outcome label.
func (h *Handler) delete(ctx context.Context, ev events.APIGatewayV2HTTPRequest, ids []string) (*threads.Result, events.APIGatewayV2HTTPResponse, string) {
	authz, _ := header(ev.Headers, "authorization")
	apiKey, apiKeyPresent := header(ev.Headers, "x-api-key")
	caller, err := h.Auth.Authenticate(ctx, authz, apiKey, apiKeyPresent)
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) {
			return nil, unauthorized(ae.Detail), "unauthenticated"
		}
		if errors.Is(err, auth.ErrUnavailable) { // logged by auth
			return nil, unavailable(), "unavailable"
		}
		h.logger().ErrorContext(ctx, "authentication failed unexpectedly", "error", err.Error())
		return nil, detail(500, detailFailed), "error"
	}

	res, err := h.Deleter.Delete(ctx, threads.Request{ThreadIDs: ids, Caller: caller})
	switch {
	case err == nil:
		return &res, events.APIGatewayV2HTTPResponse{}, ""
	case errors.Is(err, threads.ErrInvalidAPIKey):
		return nil, unauthorized(detailInvalidKey), "unauthenticated"
	case errors.Is(err, threads.ErrSessionRevoked):
		return nil, unauthorized(detailSessionRevoked), "unauthenticated"
	case errors.Is(err, threads.ErrUnavailable):
		h.logger().WarnContext(ctx, "database unavailable", "error", err.Error())
		return nil, unavailable(), "unavailable"
	default:
		h.logger().ErrorContext(ctx, "delete failed", "error", err.Error())
		return nil, detail(500, detailFailed), "error"
	}
}

// logExchange writes the one log line of a request. It is also the
// request's metrics document (package metrics): the counts below are
// extracted by CloudWatch from this same line.
func (h *Handler) logExchange(ctx context.Context, start time.Time, resp events.APIGatewayV2HTTPResponse, ex exchange) {
	took := float64(time.Since(start).Microseconds()) / 1000
	attrs := []any{"endpoint", ex.endpoint, "outcome", ex.outcome, "status", resp.StatusCode,
		"duration_ms", took, "requested", ex.requested}
	if ex.endpoint == "delete" {
		attrs = append(attrs, "thread_id", ex.threadID)
	}
	var deleted, projects, queued, deferred, inline, late float64
	if r := ex.res; r != nil {
		attrs = append(attrs,
			"threads_deleted", len(r.Work.ThreadIDs), "projects_deleted", len(r.Work.ProjectIDs),
			"forbidden", len(r.Forbidden), "messages_deleted", r.Messages, "runs_deleted", r.Runs,
			"agents_stopped", len(r.Work.StopRuns), "db_round_trips", r.RoundTrips)
		deleted, projects = float64(len(r.Work.ThreadIDs)), float64(len(r.Work.ProjectIDs))
		if r.Work.ID != "" {
			attrs = append(attrs, "redis_work_id", r.Work.ID, "redis_applied", r.CacheErr == nil)
			if r.CacheErr == nil {
				inline = 1
			} else {
				late = 1
			}
		}
		if n := len(r.Teardowns); n > 0 {
			attrs = append(attrs, "teardowns", n, "teardowns_queued", r.QueueErr == nil)
			if r.QueueErr == nil {
				queued = float64(n)
			} else {
				deferred = float64(n)
			}
		}
	}
	m := metrics.New(h.Namespace).
		Dimension(metrics.DimEndpoint, ex.endpoint).
		Dimension(metrics.DimOutcome, ex.outcome).
		Put(metrics.Requests, 1).
		Put(metrics.Duration, took).
		Put(metrics.ThreadsDeleted, deleted).
		Put(metrics.ProjectsDeleted, projects).
		Put(metrics.TeardownsQueued, queued).
		Put(metrics.TeardownsDeferred, deferred).
		Put(metrics.RedisWorkInline, inline).
		Put(metrics.RedisWorkDeferred, late)
	h.logger().InfoContext(ctx, "delete threads", append(attrs, m.Attrs()...)...)
}

func (ex exchange) with(outcome string) exchange {
	ex.outcome = outcome
	return ex
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

func notAllowed(allow string) events.APIGatewayV2HTTPResponse {
	r := detail(405, detailNotAllowed)
	r.Headers["Allow"] = allow
	return r
}

func jsonResponse(status int, body any) events.APIGatewayV2HTTPResponse {
	b, _ := json.Marshal(body) // maps of strings and bulkResult always encode
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
