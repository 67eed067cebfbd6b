package samtemplate

// The sample events in events/ feed `make invoke` and the functions' tests,
// so they must decode into the aws-lambda-go types the handlers receive,
// with no field misspelt (unknown fields are rejected) and the values each
// scenario is named for.

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

var (
	uuidRE   = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	apiKeyRE = regexp.MustCompile(`^pk_[A-Za-z0-9]{32}:sk_[A-Za-z0-9]{32}$`)
)

// decodeStrict decodes a JSON event, failing on fields the type lacks.
func decodeStrict(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", filepath.Base(path), err)
	}
}

// checkHTTP holds what every HTTP API event of the route shares.
func checkHTTP(t *testing.T, e events.APIGatewayV2HTTPRequest) {
	t.Helper()
	id := e.PathParameters["thread_id"]
	checks := []struct {
		field string
		got   any
		want  any
	}{
		{"version", e.Version, "2.0"},
		{"routeKey", e.RouteKey, "DELETE /threads/{thread_id}"},
		{"requestContext.routeKey", e.RequestContext.RouteKey, "DELETE /threads/{thread_id}"},
		{"rawPath", e.RawPath, "/threads/" + id},
		{"requestContext.http.method", e.RequestContext.HTTP.Method, "DELETE"},
		{"requestContext.http.path", e.RequestContext.HTTP.Path, "/threads/" + id},
		{"requestContext.stage", e.RequestContext.Stage, "$default"},
		{"isBase64Encoded", e.IsBase64Encoded, false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#v, want %#v", c.field, c.got, c.want)
		}
	}
	if e.RequestContext.RequestID == "" || e.RequestContext.AccountID == "" || e.RequestContext.APIID == "" {
		t.Error("requestContext lacks requestId, accountId or apiId")
	}
	// Payload 2.0 lower-cases header names; the handler relies on it.
	for name := range e.Headers {
		if name != strings.ToLower(name) {
			t.Errorf("header %q is not lower-case", name)
		}
	}
	at, err := time.Parse("02/Jan/2006:15:04:05 -0700", e.RequestContext.Time)
	if err != nil || at.UnixMilli() != e.RequestContext.TimeEpoch {
		t.Errorf("requestContext.time %q and timeEpoch %d disagree", e.RequestContext.Time, e.RequestContext.TimeEpoch)
	}
}

// teardownBody is the version-1 message the delete function sends.
type teardownBody struct {
	Version     int       `json:"version"`
	Kind        string    `json:"kind"`
	JobID       string    `json:"job_id"`
	ProjectID   string    `json:"project_id"`
	AccountID   string    `json:"account_id"`
	SandboxID   string    `json:"sandbox_id"`
	ThreadID    string    `json:"thread_id"`
	RequestedAt time.Time `json:"requested_at"`
}

func TestEvents(t *testing.T) {
	root, err := FindRepoRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "events")

	bearer := func(t *testing.T, e events.APIGatewayV2HTTPRequest) {
		if got := e.Headers["authorization"]; got != "Bearer REPLACE_WITH_TOKEN" {
			t.Errorf("authorization = %q, want the Bearer REPLACE_WITH_TOKEN placeholder", got)
		}
		if _, ok := e.Headers["x-api-key"]; ok {
			t.Error("x-api-key present; it would take precedence over the bearer token")
		}
	}
	validID := func(want string) func(*testing.T, events.APIGatewayV2HTTPRequest) {
		return func(t *testing.T, e events.APIGatewayV2HTTPRequest) {
			if id := e.PathParameters["thread_id"]; id != want {
				t.Errorf("thread_id = %q, want %q", id, want)
			}
		}
	}
	const demoThread = "7b1f1c52-5a8c-4a8e-9b59-2f0d9a1e3c10"

	httpEvents := []struct {
		file   string
		checks []func(*testing.T, events.APIGatewayV2HTTPRequest)
	}{
		{"delete-thread.json", []func(*testing.T, events.APIGatewayV2HTTPRequest){bearer, validID(demoThread)}},
		{"delete-thread-missing-auth.json", []func(*testing.T, events.APIGatewayV2HTTPRequest){
			validID(demoThread),
			func(t *testing.T, e events.APIGatewayV2HTTPRequest) {
				for _, h := range []string{"authorization", "x-api-key"} {
					if _, ok := e.Headers[h]; ok {
						t.Errorf("%s present in the missing-auth event", h)
					}
				}
			},
		}},
		{"delete-thread-invalid-id.json", []func(*testing.T, events.APIGatewayV2HTTPRequest){bearer, validID("not-a-uuid")}},
		{"delete-thread-forbidden.json", []func(*testing.T, events.APIGatewayV2HTTPRequest){
			bearer,
			func(t *testing.T, e events.APIGatewayV2HTTPRequest) {
				id := e.PathParameters["thread_id"]
				if !uuidRE.MatchString(id) || strings.EqualFold(id, demoThread) {
					t.Errorf("thread_id = %q, want a UUID other than the demo thread", id)
				}
			},
		}},
		{"delete-thread-api-key.json", []func(*testing.T, events.APIGatewayV2HTTPRequest){
			validID(demoThread),
			func(t *testing.T, e events.APIGatewayV2HTTPRequest) {
				if key := e.Headers["x-api-key"]; !apiKeyRE.MatchString(key) {
					t.Errorf("x-api-key = %q, want pk_<32 alphanumerics>:sk_<32 alphanumerics>", key)
				}
				if _, ok := e.Headers["authorization"]; ok {
					t.Error("authorization present in the API key event")
				}
			},
		}},
	}
	covered := []string{"sqs-teardown.json", "scheduled-sweep.json"}
	for _, tt := range httpEvents {
		covered = append(covered, tt.file)
		t.Run(tt.file, func(t *testing.T) {
			var e events.APIGatewayV2HTTPRequest
			decodeStrict(t, filepath.Join(dir, tt.file), &e)
			checkHTTP(t, e)
			for _, check := range tt.checks {
				check(t, e)
			}
		})
	}

	t.Run("bulk-delete.json", func(t *testing.T) {
		var e events.APIGatewayV2HTTPRequest
		decodeStrict(t, filepath.Join(dir, "bulk-delete.json"), &e)
		const route = "POST /threads/bulk-delete"
		if e.Version != "2.0" || e.RouteKey != route || e.RequestContext.RouteKey != route || e.RawPath != "/threads/bulk-delete" ||
			e.RequestContext.HTTP.Method != "POST" || e.RequestContext.HTTP.Path != e.RawPath || e.IsBase64Encoded {
			t.Errorf("not a payload 2.0 event of %s: %+v", route, e)
		}
		bearer(t, e)
		var body struct {
			ThreadIDs []string `json:"thread_ids"`
		}
		dec := json.NewDecoder(strings.NewReader(e.Body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || len(body.ThreadIDs) == 0 {
			t.Fatalf("body %q is not {\"thread_ids\": [...]}: %v", e.Body, err)
		}
		for _, id := range body.ThreadIDs {
			if !uuidRE.MatchString(id) {
				t.Errorf("thread id %q is not a UUID", id)
			}
		}
		if !slices.Contains(body.ThreadIDs, demoThread) {
			t.Error("the demo thread is not among the ids")
		}
		if e.Headers["content-length"] != strconv.Itoa(len(e.Body)) {
			t.Errorf("content-length %s, body is %d bytes", e.Headers["content-length"], len(e.Body))
		}
	})
	covered = append(covered, "bulk-delete.json")

	t.Run("sqs-teardown.json", func(t *testing.T) {
		var e events.SQSEvent
		decodeStrict(t, filepath.Join(dir, "sqs-teardown.json"), &e)
		if len(e.Records) != 2 {
			t.Fatalf("%d records, want 2", len(e.Records))
		}
		seen := map[string]bool{}
		for i, r := range e.Records {
			if r.EventSource != "aws:sqs" || !strings.HasPrefix(r.EventSourceARN, "arn:aws:sqs:") {
				t.Errorf("record %d: eventSource %q eventSourceARN %q", i, r.EventSource, r.EventSourceARN)
			}
			if r.MessageId == "" || r.ReceiptHandle == "" || seen[r.MessageId] {
				t.Errorf("record %d: messageId %q must be set and unique, with a receiptHandle", i, r.MessageId)
			}
			seen[r.MessageId] = true
			if r.Attributes["ApproximateReceiveCount"] == "" {
				t.Errorf("record %d: no ApproximateReceiveCount attribute", i)
			}
			if sum := md5.Sum([]byte(r.Body)); hex.EncodeToString(sum[:]) != r.Md5OfBody {
				t.Errorf("record %d: md5OfBody does not match the body", i)
			}
			var b teardownBody
			dec := json.NewDecoder(strings.NewReader(r.Body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&b); err != nil {
				t.Fatalf("record %d body: %v", i, err)
			}
			if b.Version != 1 || b.Kind != "sandbox_teardown" || b.SandboxID == "" || b.RequestedAt.IsZero() {
				t.Errorf("record %d body = %+v, want a version 1 sandbox_teardown", i, b)
			}
			for _, id := range []string{b.JobID, b.ProjectID, b.AccountID, b.ThreadID} {
				if !uuidRE.MatchString(id) {
					t.Errorf("record %d body: %q is not a UUID", i, id)
				}
			}
		}
		var first teardownBody
		_ = json.Unmarshal([]byte(e.Records[0].Body), &first)
		if first.SandboxID != "sandbox-demo-1" || first.ThreadID != demoThread {
			t.Errorf("first record tears down %q for thread %q, want sandbox-demo-1 for the demo thread", first.SandboxID, first.ThreadID)
		}
	})

	t.Run("scheduled-sweep.json", func(t *testing.T) {
		var e events.EventBridgeEvent
		decodeStrict(t, filepath.Join(dir, "scheduled-sweep.json"), &e)
		if e.DetailType != "Scheduled Event" || e.Source != "aws.events" {
			t.Errorf("detail-type %q source %q, want Scheduled Event from aws.events", e.DetailType, e.Source)
		}
		if len(e.Resources) != 1 || !strings.HasPrefix(e.Resources[0], "arn:aws:events:") || e.Time.IsZero() {
			t.Errorf("resources %v time %v, want the rule ARN and a time", e.Resources, e.Time)
		}
	})

	// A new sample event must come with a check here.
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !slices.Contains(covered, filepath.Base(f)) {
			t.Errorf("events/%s is not checked by TestEvents", filepath.Base(f))
		}
	}
}
