package apigw_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/apigw"
	"github.com/kortix-ai/thread-delete/shared/auth"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

// recordingDeleter stands in for the domain service: it records every call
// and answers with one of the domain's outcomes.
type recordingDeleter struct {
	mu      sync.Mutex
	calls   []threads.Request
	outcome threads.Outcome // for every requested id
	err     error
}

func (d *recordingDeleter) Delete(_ context.Context, req threads.Request) (threads.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, req)
	if d.err != nil {
		return threads.Result{}, d.err
	}
	var del threads.Deletion
	switch d.outcome {
	case threads.OutcomeDeleted:
		del.Work = threads.CacheWork{ID: "00000000-0000-4000-8000-000000000001", ThreadIDs: req.ThreadIDs}
	case threads.OutcomeForbidden:
		del.Forbidden = req.ThreadIDs
	}
	return threads.Result{Deletion: del}, nil
}

// internalSecret stands for what an internal error may carry (addresses,
// SQL, credentials); it must never reach a client.
const internalSecret = "pq: password=hunter2 host=10.0.3.7 relation public.threads"

// deleterOutcomes are the Deleter's possible answers and the status each
// must become.
var deleterOutcomes = []struct {
	outcome threads.Outcome
	err     error
	status  int
}{
	{threads.OutcomeDeleted, nil, 200},
	{threads.OutcomeNotFound, nil, 404},
	{threads.OutcomeForbidden, nil, 403},
	{0, threads.ErrInvalidAPIKey, 401},
	{0, fmt.Errorf("%w: %s", threads.ErrUnavailable, internalSecret), 503},
	{0, threads.ErrSessionRevoked, 401},
	{0, errors.New(internalSecret), 500},
}

// FuzzHandle feeds the API Gateway adapter arbitrary methods, paths, thread
// ids and headers (with the real authenticator) and checks the promises of
// the contract that hold for every input: no panic, no handler error, a
// status of the contract, a JSON object body with Content-Type
// application/json, WWW-Authenticate on every 401 and Retry-After on every
// 503, no internal text in any body, and no call of the Deleter unless the
// id is a UUID and the credentials verified.
func FuzzHandle(f *testing.F) {
	authn, err := auth.New(auth.Config{HS256Secret: []byte(testenv.JWTSecret), Audience: "authenticated", APIKeySecret: []byte(apiKeySecret)})
	if err != nil {
		f.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	user := "6f1c2a9e-3b4d-4e5f-8a7b-9c0d1e2f3a4b"
	id := "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"
	token := "Bearer " + testenv.Token(user)
	apiKey := "pk_" + strings.Repeat("a", 32) + ":sk_" + strings.Repeat("B", 32)
	for _, s := range []struct {
		method, rawPath, threadID string
		pathParam                 bool
		authorization, apiKey     string
		apiKeyPresent             bool
		headerName, headerValue   string
		outcome, inflate          uint8
	}{
		{"DELETE", "/threads/" + id, id, true, token, "", false, "", "", 0, 0},
		{"delete", "/threads/" + strings.ToUpper(id), strings.ToUpper(id), true, token, "", false, "", "", 1, 0},
		{"DELETE", "/threads/" + id, id, false, token, "", false, "", "", 2, 0},
		{"DELETE", "/threads/" + id + "/", "", false, "", apiKey, true, "", "", 3, 0},
		{"DELETE", "/threads/" + id, id, true, token, "", false, "Authorization", "Basic eA==", 4, 0},
		{"DELETE", "/threads/" + id, id, true, token, "", false, "", "", 0, 1},
		{"DELETE", "/threads/" + id, id, true, token, apiKey, true, "", "", 0, 2},
		{"DELETE", "/threads/" + id, id, true, token, apiKey, true, "", "", 0, 1},
		{"DELETE", "/threads/" + id, id, true, "", "", true, "", "", 5, 0},
		{"DELETE", "/v1/threads/" + id, id, true, token, "", false, "X-Api-Key", apiKey, 6, 0},
		{"GET", "/threads/" + id, id, true, token, "", false, "", "", 0, 0},
		{"", "", "", false, "", "", false, "", "", 0, 0},
		{"DELETE", "/threads/1' OR '1'='1", "1' OR '1'='1", true, token, "", false, "", "", 0, 0},
		{"DELETE", "/threads/../../projects/" + id, "../../projects/" + id, true, token, "", false, "", "", 0, 0},
		{"DELETE", "/threads/" + id, strings.Replace(id, "a", "а", 1), true, token, "", false, "", "", 0, 0},
		{"DELETE", "/threads/" + id, id + "\x00", true, token, "", false, "", "", 0, 0},
		{"DELETE", "/threads/{" + id + "}", "{" + id + "}", true, token, "", false, "", "", 0, 0},
		{"DELETE", "/threads/" + id, id, true, "bearer eyJhbGciOiJub25lIn0.e30.", "", false, "", "", 0, 0},
		{"PATCH", "/threads/" + id, id, true, "", "", false, "x-http-method-override", "DELETE", 0, 0},
	} {
		f.Add(s.method, s.rawPath, s.threadID, s.pathParam, s.authorization, s.apiKey, s.apiKeyPresent, s.headerName, s.headerValue, s.outcome, s.inflate)
	}

	contract := map[int]bool{200: true, 400: true, 401: true, 403: true, 404: true, 500: true, 503: true}
	// Oversized credentials are made here rather than stored in the corpus,
	// which keeps the mutator fast: bit 0 pads Authorization, bit 1 the API
	// key, past the adapter's 16 KiB limit.
	pad := strings.Repeat("A", 16<<10)
	f.Fuzz(func(t *testing.T, method, rawPath, threadID string, pathParam bool, authorization, apiKey string, apiKeyPresent bool, headerName, headerValue string, outcome, inflate uint8) {
		want := deleterOutcomes[int(outcome)%len(deleterOutcomes)]
		if inflate&1 != 0 {
			authorization += pad
		}
		if inflate&2 != 0 {
			apiKey += pad
		}
		if strings.HasSuffix(strings.TrimSuffix(rawPath, "/"), apigw.BulkPath) {
			t.Skip("the bulk route has its own fuzz target")
		}
		deleter := &recordingDeleter{outcome: want.outcome, err: want.err}
		h := &apigw.Handler{Auth: authn, Deleter: deleter, Log: quiet}

		ev := events.APIGatewayV2HTTPRequest{RawPath: rawPath, Headers: map[string]string{}}
		ev.RequestContext.HTTP.Method = method
		if pathParam {
			ev.PathParameters = map[string]string{"thread_id": threadID}
		}
		if authorization != "" {
			ev.Headers["authorization"] = authorization
		}
		if apiKeyPresent {
			ev.Headers["x-api-key"] = apiKey
		}
		if headerName != "" {
			ev.Headers[headerName] = headerValue
		}

		resp, err := h.Handle(context.Background(), ev)
		if err != nil {
			t.Fatalf("handler error: %v", err)
		}
		otherMethod := method != "" && !strings.EqualFold(method, "DELETE")
		if !contract[resp.StatusCode] && !(resp.StatusCode == 405 && otherMethod) {
			t.Fatalf("status %d is not one of the contract's", resp.StatusCode)
		}
		if ct := resp.Headers["Content-Type"]; ct != "application/json" {
			t.Fatalf("Content-Type = %q", ct)
		}
		var body map[string]string
		if !strings.HasPrefix(resp.Body, "{") || json.Unmarshal([]byte(resp.Body), &body) != nil || len(body) == 0 {
			t.Fatalf("body %q is not a JSON object of strings", resp.Body)
		}
		if strings.Contains(resp.Body, "hunter2") || strings.Contains(resp.Body, "10.0.3.7") || strings.Contains(resp.Body, "pq:") {
			t.Fatalf("body leaks internal text: %s", resp.Body)
		}
		if resp.StatusCode == 401 && resp.Headers["WWW-Authenticate"] != "Bearer" {
			t.Fatalf("401 without WWW-Authenticate: Bearer: %v", resp.Headers)
		}
		if resp.StatusCode == 503 && resp.Headers["Retry-After"] == "" {
			t.Fatalf("503 without Retry-After: %v", resp.Headers)
		}

		// X-API-Key, when present, alone decides; its refusals name the key.
		keyHeaderVariant := headerName != "" && strings.EqualFold(headerName, "x-api-key")
		if resp.StatusCode == 401 && len(deleter.calls) == 0 && !keyHeaderVariant {
			keyDetail := body["detail"] == auth.DetailInvalidAPIKeyFormat || body["detail"] == auth.DetailInvalidAPIKey
			if apiKeyPresent != keyDetail {
				t.Fatalf("401 %q with X-API-Key present = %v", body["detail"], apiKeyPresent)
			}
		}
		if len(deleter.calls) == 1 && apiKeyPresent && !keyHeaderVariant && deleter.calls[0].Caller.APIKey == nil {
			t.Fatalf("X-API-Key present but the caller came from elsewhere: %+v", deleter.calls[0].Caller)
		}

		if len(deleter.calls) > 1 {
			t.Fatalf("Deleter called %d times", len(deleter.calls))
		}
		if len(deleter.calls) == 0 {
			if resp.StatusCode == 200 || resp.StatusCode == 403 || resp.StatusCode == 404 || resp.StatusCode == 503 || resp.StatusCode == 500 {
				t.Fatalf("status %d without asking the Deleter", resp.StatusCode)
			}
			return
		}
		if otherMethod {
			t.Fatalf("method %q reached the Deleter", method)
		}
		req := deleter.calls[0]
		if len(req.ThreadIDs) != 1 {
			t.Fatalf("Deleter got %d ids for one path", len(req.ThreadIDs))
		}
		got := req.ThreadIDs[0]
		if canon, err := threads.ParseID(got); err != nil || canon != got {
			t.Fatalf("Deleter got thread id %q, not a canonical UUID", got)
		}
		if pathParam && strings.ToLower(threadID) != got {
			t.Fatalf("Deleter got thread id %q for path parameter %q", got, threadID)
		}
		if !pathParam && !strings.Contains(strings.ToLower(rawPath), got) {
			t.Fatalf("Deleter got thread id %q not in path %q", got, rawPath)
		}
		switch c := req.Caller; {
		case c.APIKey != nil && c.UserID == "":
		case c.APIKey == nil && c.UserID != "":
			if canon, err := threads.ParseID(c.UserID); err != nil || canon != c.UserID {
				t.Fatalf("caller user id %q is not a canonical UUID", c.UserID)
			}
		default:
			t.Fatalf("Deleter called without exactly one verified credential: %+v", c)
		}
		if resp.StatusCode != want.status {
			t.Fatalf("Deleter answered %v, status %d, want %d", want.err, resp.StatusCode, want.status)
		}
		if resp.StatusCode == 200 {
			if body["message"] != "Thread deleted successfully" || !strings.EqualFold(body["thread_id"], got) || len(body) != 2 {
				t.Fatalf("200 body = %v", body)
			}
		}
	})
}
