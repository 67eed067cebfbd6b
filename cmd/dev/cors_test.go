package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/internal/samtemplate"
)

// templateCors is the repository's CorsConfiguration, read directly, for
// the expected headers.
func templateCors(t *testing.T) samtemplate.Cors {
	t.Helper()
	tmpl, err := samtemplate.Load(filepath.Join(testenv.RepoRoot(t), "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := tmpl.HttpApiCors(templateAPI)
	if err != nil || !ok {
		t.Fatalf("template CorsConfiguration: ok=%v %v", ok, err)
	}
	// The requests below rely on these; the template test holds the rest.
	for _, m := range []string{"DELETE", "POST"} {
		if !slices.Contains(c.AllowMethods, m) {
			t.Fatalf("template AllowMethods %v lack %s", c.AllowMethods, m)
		}
	}
	if len(c.ExposeHeaders) == 0 || c.MaxAge == 0 {
		t.Fatalf("template CorsConfiguration has no ExposeHeaders or MaxAge: %+v", c)
	}
	return c
}

func TestCORSOriginsSetting(t *testing.T) {
	root := testenv.RepoRoot(t)
	for _, tc := range []struct {
		setting string
		want    []string
	}{
		{"", []string{"*"}},
		{"*", []string{"*"}},
		{"http://localhost:5173", []string{"http://localhost:5173"}},
		{"http://localhost:5173,https://app.example.com", []string{"http://localhost:5173", "https://app.example.com"}},
	} {
		m, err := loadMirror(root, tc.setting)
		if err != nil || m.CORS == nil || !slices.Equal(m.CORS.Origins, tc.want) {
			t.Errorf("%s=%q: origins %v (%v), want %v", corsOriginsEnv, tc.setting, m.CORS, err, tc.want)
		}
	}
	// What the template's CorsAllowedOrigins refuses is refused here too,
	// with the setting's name.
	for _, bad := range []string{"localhost:5173", "http://a.example, http://b.example", "*,http://a.example", "ftp://x"} {
		if _, err := loadMirror(root, bad); err == nil || !strings.Contains(err.Error(), corsOriginsEnv) {
			t.Errorf("%s=%q: err %v, want a clear refusal", corsOriginsEnv, bad, err)
		}
	}
}

// TestGatewayCORS sends browser requests over HTTP to the gateway with the
// template's CorsConfiguration; the handler answers as the delete-thread
// handler does to a request without credentials, plus a CORS header of its
// own, which API Gateway ignores.
func TestGatewayCORS(t *testing.T) {
	tc := templateCors(t)
	mirror, err := loadMirror(testenv.RepoRoot(t), "http://localhost:5173,https://*")
	if err != nil {
		t.Fatal(err)
	}
	anyOrigin, err := loadMirror(testenv.RepoRoot(t), "")
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	handler := func(ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
		calls++
		return events.APIGatewayV2HTTPResponse{StatusCode: 401, Body: `{"detail":"Not authenticated"}`, Headers: map[string]string{
			"Content-Type": "application/json", "WWW-Authenticate": "Bearer", "Access-Control-Allow-Origin": "https://integration.example",
		}}
	}
	servers := map[string]string{}
	for name, cors := range map[string]*CORS{"listed": mirror.CORS, "any": anyOrigin.CORS} {
		g := &Gateway{Log: quietLog(), CORS: cors, Handler: func(_ context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			return handler(ev), nil
		}}
		srv := httptest.NewServer(g)
		t.Cleanup(srv.Close)
		servers[name] = srv.URL
	}

	join := func(s []string) string { return strings.Join(s, ",") }
	preflightOK := map[string]string{
		"Access-Control-Allow-Methods": join(tc.AllowMethods),
		"Access-Control-Allow-Headers": join(tc.AllowHeaders),
		"Access-Control-Max-Age":       strconv.Itoa(tc.MaxAge),
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	const id = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"
	tests := []struct {
		name, server, method, path string
		headers                    map[string]string
		status                     int
		handled                    bool
		cors                       map[string]string // every Access-Control-* header and Vary, exactly
	}{
		{"preflight of a DELETE with a token, listed origin", "listed", "OPTIONS", "/threads/" + id,
			map[string]string{"Origin": "http://localhost:5173", "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "authorization"},
			204, false, with(preflightOK, "Access-Control-Allow-Origin", "http://localhost:5173", "Vary", "Origin")},
		{"preflight of the bulk POST with a JSON body and an API key", "listed", "OPTIONS", "/threads/bulk-delete",
			map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "Content-Type, X-API-Key"},
			204, false, with(preflightOK, "Access-Control-Allow-Origin", "https://app.example.com", "Vary", "Origin")},
		{"preflight, any origin allowed", "any", "OPTIONS", "/threads/" + id,
			map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "authorization"},
			204, false, with(preflightOK, "Access-Control-Allow-Origin", "*")},
		{"preflight, origin not listed", "listed", "OPTIONS", "/threads/" + id,
			map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "authorization"},
			204, false, nil},
		{"preflight, listed origin on another port", "listed", "OPTIONS", "/threads/" + id,
			map[string]string{"Origin": "http://localhost:3000", "Access-Control-Request-Method": "DELETE"},
			204, false, nil},
		{"preflight, method not allowed", "any", "OPTIONS", "/threads/" + id,
			map[string]string{"Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"},
			204, false, nil},
		{"preflight, header not allowed", "any", "OPTIONS", "/threads/" + id,
			map[string]string{"Origin": "http://localhost:5173", "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "authorization,x-debug"},
			204, false, nil},
		{"OPTIONS that is no preflight", "any", "OPTIONS", "/threads/" + id, nil, 204, false, nil},
		{"DELETE from a listed origin", "listed", "DELETE", "/threads/" + id,
			map[string]string{"Origin": "http://localhost:5173"},
			401, true, map[string]string{"Access-Control-Allow-Origin": "http://localhost:5173", "Vary": "Origin", "Access-Control-Expose-Headers": join(tc.ExposeHeaders)}},
		{"DELETE, any origin allowed", "any", "DELETE", "/threads/" + id,
			map[string]string{"Origin": "http://localhost:5173"},
			401, true, map[string]string{"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": join(tc.ExposeHeaders)}},
		{"DELETE from an origin not listed", "listed", "DELETE", "/threads/" + id,
			map[string]string{"Origin": "http://evil.example"}, 401, true, nil},
		{"DELETE without Origin (curl)", "any", "DELETE", "/threads/" + id, nil, 401, true, nil},
		{"no route, listed origin", "listed", "GET", "/threads/" + id,
			map[string]string{"Origin": "http://localhost:5173"},
			404, false, map[string]string{"Access-Control-Allow-Origin": "http://localhost:5173", "Vary": "Origin", "Access-Control-Expose-Headers": join(tc.ExposeHeaders)}},
	}
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			calls = 0
			req, err := http.NewRequest(c.method, servers[c.server]+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || (calls == 1) != c.handled {
				t.Fatalf("status %d, handler called %d times; want %d, handled %v", resp.StatusCode, calls, c.status, c.handled)
			}
			if c.status == 204 && len(body) != 0 {
				t.Errorf("preflight body %q, want none", body)
			}
			got := map[string]string{}
			for k, v := range resp.Header {
				if strings.HasPrefix(k, "Access-Control-") || k == "Vary" {
					got[k] = strings.Join(v, ", ")
				}
			}
			if len(got) != len(c.cors) {
				t.Errorf("CORS headers %v, want %v", got, c.cors)
			}
			for k, want := range c.cors {
				if got[k] != want {
					t.Errorf("%s = %q, want %q", k, got[k], want)
				}
			}
			if c.handled && resp.Header.Get("Www-Authenticate") != "Bearer" {
				t.Error("the handler's own headers were lost")
			}
		})
	}
}
