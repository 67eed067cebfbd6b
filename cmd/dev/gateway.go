package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// The routes of the HTTP API (template.yaml), both served by the
// delete-thread handler.
const (
	deleteRoute = "DELETE /threads/{thread_id}"
	bulkRoute   = "POST /threads/bulk-delete"
)

// lambdaTimeout is DeleteThreadFunction's Timeout: every request gets this
// deadline, as the Lambda would.
const lambdaTimeout = 29 * time.Second

// maxBody bounds a request body; API Gateway's own limit is 10 MB, and the
// route takes none.
const maxBody = 1 << 20

// APIHandler is the shape of a Lambda handler for HTTP API payload 2.0
// events (apigw.Handler.Handle).
type APIHandler func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// Gateway stands in for API Gateway in front of the delete-thread Lambda: it
// turns each HTTP request into the payload 2.0 event API Gateway would send
// and writes the handler's response back. Requests no route matches get a
// 404, as from API Gateway, without reaching the handler.
type Gateway struct {
	Handler      APIHandler
	Log          *slog.Logger
	FunctionName string        // for the Lambda context; cosmetic
	Timeout      time.Duration // per request; zero means lambdaTimeout
	// CORS is the API's CorsConfiguration; nil when it has none, and
	// OPTIONS requests then find no route, as in API Gateway.
	CORS *CORS
}

// ServeHTTP handles one request as one Lambda invocation.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if g.CORS != nil {
		if r.Method == http.MethodOptions {
			w.Header().Set("Apigw-Requestid", requestID())
			if why := g.CORS.servePreflight(w, r); why != "" {
				// API Gateway refuses silently; the log says why.
				g.Log.Info("CORS preflight refused: "+why, "path", r.URL.Path, "origin", r.Header.Get("Origin"),
					"method", r.Header.Get("Access-Control-Request-Method"), "headers", r.Header.Get("Access-Control-Request-Headers"), "status", http.StatusNoContent)
			}
			return
		}
		w = g.CORS.wrap(w, r)
	}
	route, threadID, ok := matchRoute(r)
	if !ok {
		g.Log.Info("no route (only "+deleteRoute+" and "+bulkRoute+" exist)", "method", r.Method, "path", r.URL.Path, "status", http.StatusNotFound)
		writeJSON(w, http.StatusNotFound, `{"detail":"Not Found"}`)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, `{"message":"Request Entity Too Large"}`)
		return
	}
	ev := toEvent(r, route, threadID, body, start)

	timeout := g.Timeout
	if timeout <= 0 {
		timeout = lambdaTimeout
	}
	// A client that hangs up does not cancel a Lambda invocation either:
	// the delete and its follow-up work run to the end.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
	defer cancel()
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{
		AwsRequestID:       ev.RequestContext.RequestID,
		InvokedFunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:" + g.FunctionName,
	})
	resp, err := g.Handler(ctx, ev)
	if err != nil {
		// What API Gateway answers when the integration fails.
		g.Log.ErrorContext(ctx, "handler returned an error", "error", err.Error())
		writeJSON(w, http.StatusInternalServerError, `{"message":"Internal Server Error"}`)
		return
	}
	w.Header().Set("Apigw-Requestid", ev.RequestContext.RequestID)
	// The handler logs every request itself, as it does in Lambda.
	if err := writeResponse(w, resp); err != nil {
		g.Log.ErrorContext(ctx, "malformed handler response", "error", err.Error())
	}
}

// matchRoute returns the route key r matches and, for the DELETE route,
// the (decoded) path parameter. Like API Gateway, a parameter is one path
// segment and must not be empty; a trailing slash is a different path; a
// literal path wins over a parameter.
func matchRoute(r *http.Request) (route, threadID string, ok bool) {
	path := r.URL.EscapedPath()
	if path == "/threads/bulk-delete" {
		return bulkRoute, "", r.Method == http.MethodPost
	}
	if r.Method != http.MethodDelete {
		return "", "", false
	}
	rest, ok := strings.CutPrefix(path, "/threads/")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return "", "", false
	}
	id, err := url.PathUnescape(rest)
	if err != nil {
		return "", "", false
	}
	return deleteRoute, id, true
}

// toEvent builds the payload 2.0 event for r the way API Gateway does:
// header names lower-cased, repeated headers and query parameters joined
// with commas, cookies moved to their own list, a binary body base64-encoded.
func toEvent(r *http.Request, routeKey, threadID string, body []byte, now time.Time) events.APIGatewayV2HTTPRequest {
	headers := map[string]string{}
	for name, values := range r.Header {
		if strings.EqualFold(name, "Cookie") {
			continue
		}
		headers[strings.ToLower(name)] = strings.Join(values, ",")
	}
	var cookies []string
	for _, c := range r.Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	host := r.Host
	headers["host"] = host
	sourceIP, port := clientAddr(r)
	headers["x-forwarded-for"] = sourceIP
	headers["x-forwarded-proto"] = "http"
	if port != "" {
		headers["x-forwarded-port"] = port
	}

	var query map[string]string
	if values := r.URL.Query(); len(values) > 0 {
		query = map[string]string{}
		for k, v := range values {
			query[k] = strings.Join(v, ",")
		}
	}
	ev := events.APIGatewayV2HTTPRequest{
		Version:               "2.0",
		RouteKey:              routeKey,
		RawPath:               r.URL.EscapedPath(),
		RawQueryString:        r.URL.RawQuery,
		Cookies:               cookies,
		Headers:               headers,
		QueryStringParameters: query,
		PathParameters:        pathParameters(routeKey, threadID),
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     routeKey,
			AccountID:    "000000000000",
			Stage:        "$default",
			RequestID:    requestID(),
			APIID:        "local",
			DomainName:   host,
			DomainPrefix: strings.SplitN(host, ".", 2)[0],
			Time:         now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    now.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method:    r.Method,
				Path:      r.URL.Path,
				Protocol:  r.Proto,
				SourceIP:  sourceIP,
				UserAgent: r.UserAgent(),
			},
		},
	}
	if len(body) > 0 {
		if utf8.Valid(body) {
			ev.Body = string(body)
		} else {
			ev.Body = base64.StdEncoding.EncodeToString(body)
			ev.IsBase64Encoded = true
		}
	}
	return ev
}

// clientAddr returns the caller's IP and the port the request came in on.
func clientAddr(r *http.Request) (ip, localPort string) {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(addr.String()); err == nil {
			localPort = p
		}
	}
	return ip, localPort
}

// requestID mimics API Gateway's short base64 request ids.
func requestID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:]) + "="
}

// writeResponse writes a payload 2.0 response: headers (single and
// multi-valued), cookies as Set-Cookie, the status and the body.
func writeResponse(w http.ResponseWriter, resp events.APIGatewayV2HTTPResponse) error {
	h := w.Header()
	for k, v := range resp.Headers {
		h.Set(k, v)
	}
	for k, vs := range resp.MultiValueHeaders {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	for _, c := range resp.Cookies {
		h.Add("Set-Cookie", c)
	}
	body := []byte(resp.Body)
	var decodeErr error
	if resp.IsBase64Encoded {
		if body, decodeErr = base64.StdEncoding.DecodeString(resp.Body); decodeErr != nil {
			body = nil
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	status := resp.StatusCode
	if status == 0 {
		status = http.StatusOK // what API Gateway assumes
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return decodeErr
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// pathParameters is what API Gateway passes for the route: none for the
// bulk route.
func pathParameters(routeKey, threadID string) map[string]string {
	if routeKey != deleteRoute {
		return nil
	}
	return map[string]string{"thread_id": threadID}
}
