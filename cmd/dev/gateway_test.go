package main

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// recorder is a handler that remembers the event and context it got.
type recorder struct {
	called   bool
	ev       events.APIGatewayV2HTTPRequest
	deadline time.Duration
	reqID    string
	resp     events.APIGatewayV2HTTPResponse
}

func (r *recorder) handle(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	r.called, r.ev = true, ev
	if dl, ok := ctx.Deadline(); ok {
		r.deadline = time.Until(dl)
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		r.reqID = lc.AwsRequestID
	}
	return r.resp, nil
}

func TestGatewayRoutes(t *testing.T) {
	tests := []struct {
		method, path string
		routed       bool
		id           string
	}{
		{"POST", "/threads/bulk-delete", true, ""},
		{"DELETE", "/threads/bulk-delete", false, ""}, // the literal path wins, and it has only POST
		{"POST", "/threads/7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10", false, ""},
		{"DELETE", "/threads/7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10", true, "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"},
		{"DELETE", "/threads/not-a-uuid", true, "not-a-uuid"}, // the handler answers 400
		{"DELETE", "/threads/a%20b", true, "a b"},
		{"GET", "/threads/7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10", false, ""},
		{"DELETE", "/threads/", false, ""},
		{"DELETE", "/threads/a/b", false, ""},
		{"DELETE", "/threads/a%2Fb", true, "a/b"},
		{"DELETE", "/projects/x", false, ""},
		{"DELETE", "/", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rec := &recorder{resp: events.APIGatewayV2HTTPResponse{StatusCode: 200, Body: "{}"}}
			g := &Gateway{Handler: rec.handle, Log: quietLog()}
			w := httptest.NewRecorder()
			g.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
			if rec.called != tc.routed {
				t.Fatalf("handler called = %v, want %v", rec.called, tc.routed)
			}
			if !tc.routed {
				if w.Code != 404 || w.Body.String() != `{"detail":"Not Found"}` || w.Header().Get("Content-Type") != "application/json" {
					t.Fatalf("unrouted: %d %q %v", w.Code, w.Body.String(), w.Header())
				}
				return
			}
			if got := rec.ev.PathParameters["thread_id"]; got != tc.id {
				t.Fatalf("thread_id = %q, want %q", got, tc.id)
			}
			if want := tc.method + " " + map[bool]string{true: "/threads/{thread_id}", false: "/threads/bulk-delete"}[tc.id != ""]; rec.ev.RouteKey != want || rec.ev.RequestContext.RouteKey != want {
				t.Fatalf("route key %q / %q, want %q", rec.ev.RouteKey, rec.ev.RequestContext.RouteKey, want)
			}
		})
	}
}

func TestGatewayBuildsAPIGatewayV2Event(t *testing.T) {
	rec := &recorder{resp: events.APIGatewayV2HTTPResponse{StatusCode: 200}}
	g := &Gateway{Handler: rec.handle, Log: quietLog()}
	req := httptest.NewRequest("DELETE", "http://127.0.0.1:3000/threads/abc?x=1&x=2&y=3", strings.NewReader("hello"))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("X-API-Key", "pk_x:sk_y")
	req.Header.Add("X-Multi", "a")
	req.Header.Add("X-Multi", "b")
	req.Header.Set("Cookie", "a=1; b=2")
	req.Header.Set("User-Agent", "curl/8.5.0")
	g.ServeHTTP(httptest.NewRecorder(), req)

	ev := rec.ev
	checks := []struct {
		name, got, want string
	}{
		{"version", ev.Version, "2.0"},
		{"routeKey", ev.RouteKey, "DELETE /threads/{thread_id}"},
		{"requestContext.routeKey", ev.RequestContext.RouteKey, "DELETE /threads/{thread_id}"},
		{"rawPath", ev.RawPath, "/threads/abc"},
		{"rawQueryString", ev.RawQueryString, "x=1&x=2&y=3"},
		{"query x", ev.QueryStringParameters["x"], "1,2"},
		{"authorization", ev.Headers["authorization"], "Bearer t"},
		{"x-api-key", ev.Headers["x-api-key"], "pk_x:sk_y"},
		{"x-multi", ev.Headers["x-multi"], "a,b"},
		{"cookie header", ev.Headers["cookie"], ""},
		{"cookies", strings.Join(ev.Cookies, ";"), "a=1;b=2"},
		{"method", ev.RequestContext.HTTP.Method, "DELETE"},
		{"path", ev.RequestContext.HTTP.Path, "/threads/abc"},
		{"userAgent", ev.RequestContext.HTTP.UserAgent, "curl/8.5.0"},
		{"stage", ev.RequestContext.Stage, "$default"},
		{"body", ev.Body, "hello"},
		{"lambda request id", rec.reqID, ev.RequestContext.RequestID},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	for k := range ev.Headers {
		if k != strings.ToLower(k) {
			t.Errorf("header %q not lower-cased", k)
		}
	}
	if ev.RequestContext.RequestID == "" || ev.RequestContext.TimeEpoch == 0 {
		t.Errorf("request id / time missing: %+v", ev.RequestContext)
	}
	if rec.deadline <= 9*time.Second || rec.deadline > lambdaTimeout {
		t.Errorf("handler deadline %s, want the Lambda timeout %s", rec.deadline, lambdaTimeout)
	}
}

func TestGatewayBinaryBodyIsBase64(t *testing.T) {
	rec := &recorder{}
	g := &Gateway{Handler: rec.handle, Log: quietLog()}
	g.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/threads/x", strings.NewReader("\xff\xfe")))
	if !rec.ev.IsBase64Encoded || rec.ev.Body != base64.StdEncoding.EncodeToString([]byte("\xff\xfe")) {
		t.Fatalf("body %q base64=%v", rec.ev.Body, rec.ev.IsBase64Encoded)
	}
}

func TestGatewayWritesTheResponse(t *testing.T) {
	rec := &recorder{resp: events.APIGatewayV2HTTPResponse{
		StatusCode:        401,
		Headers:           map[string]string{"Content-Type": "application/json", "WWW-Authenticate": "Bearer"},
		MultiValueHeaders: map[string][]string{"X-Two": {"1", "2"}},
		Cookies:           []string{"s=1; HttpOnly"},
		Body:              base64.StdEncoding.EncodeToString([]byte(`{"detail":"Invalid token"}`)),
		IsBase64Encoded:   true,
	}}
	g := &Gateway{Handler: rec.handle, Log: quietLog()}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, httptest.NewRequest("DELETE", "/threads/x", nil))
	res := w.Result()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 401 || string(body) != `{"detail":"Invalid token"}` {
		t.Fatalf("%d %q", res.StatusCode, body)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "Www-Authenticate": "Bearer", "Set-Cookie": "s=1; HttpOnly"} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if got := res.Header.Values("X-Two"); len(got) != 2 {
		t.Errorf("X-Two = %v", got)
	}
	if res.Header.Get("Apigw-Requestid") == "" {
		t.Error("no Apigw-Requestid header")
	}
}

func TestGatewayHandlerErrorIs500(t *testing.T) {
	g := &Gateway{Log: quietLog(), Handler: func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		return events.APIGatewayV2HTTPResponse{}, io.ErrUnexpectedEOF
	}}
	w := httptest.NewRecorder()
	g.ServeHTTP(w, httptest.NewRequest("DELETE", "/threads/x", nil))
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "EOF") {
		t.Fatalf("%d %q", w.Code, w.Body.String())
	}
}
