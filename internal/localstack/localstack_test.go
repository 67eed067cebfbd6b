package localstack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
)

func TestWithHost(t *testing.T) {
	tests := []struct{ in, host, want string }{
		{"postgres://postgres@127.0.0.1:5432/db?sslmode=disable", "127.0.0.1:6432", "postgres://postgres@127.0.0.1:6432/db?sslmode=disable"},
		{"postgresql://u:p%40ss@db:5432/app?application_name=x", "proxy:1", "postgresql://u:p%40ss@proxy:1/app?application_name=x"},
		{"redis://127.0.0.1:6379/3", "127.0.0.1:7000", "redis://127.0.0.1:7000/3"},
	}
	for _, tc := range tests {
		if got, err := localstack.WithHost(tc.in, tc.host); err != nil || got != tc.want {
			t.Errorf("WithHost(%q, %q) = %q, %v; want %q", tc.in, tc.host, got, err, tc.want)
		}
	}
}

// deleteSandbox calls the stand-in as the cleanup worker does.
func deleteSandbox(t *testing.T, d *localstack.Daytona, id, key string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, d.URL+"/sandbox/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("DELETE %s: body is not JSON: %v", id, err)
	}
	return resp.StatusCode, body
}

// The dev stack's stand-in: every sandbox exists until its first delete,
// which is logged for the developer; a second delete is Daytona's own 404.
func TestDaytonaAnySandbox(t *testing.T) {
	var logs bytes.Buffer
	d, err := localstack.StartDaytona(localstack.DaytonaOptions{
		APIKey: "k", AnySandbox: true, Log: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	if status, body := deleteSandbox(t, d, "sb-any", "wrong"); status != 401 || body["message"] != "Invalid API key" {
		t.Fatalf("wrong key: %d %v", status, body)
	}
	if !d.Exists("sb-any") {
		t.Fatal("a refused delete removed the sandbox")
	}
	if status, body := deleteSandbox(t, d, "sb-any", "k"); status != 200 || body["state"] != "destroying" || body["id"] != "sb-any" {
		t.Fatalf("first delete: %d %v", status, body)
	}
	status, body := deleteSandbox(t, d, "sb-any", "k")
	if status != 404 || body["message"] != "Sandbox with ID or name sb-any not found" || body["code"] != "NOT_FOUND" {
		t.Fatalf("second delete: %d %v", status, body)
	}
	if got := d.Teardowns(); len(got) != 1 || got[0] != "sb-any" || d.Calls("sb-any") != 3 || d.Exists("sb-any") {
		t.Fatalf("teardowns %v, calls %d, exists %v", got, d.Calls("sb-any"), d.Exists("sb-any"))
	}
	if !strings.Contains(logs.String(), "DEV DAYTONA STAND-IN: DELETE /sandbox/sb-any → 200") {
		t.Errorf("the teardown was not logged:\n%s", logs.String())
	}
}

// Without AnySandbox only added sandboxes exist: what the worker's tests
// script against.
func TestDaytonaKnownSandboxesOnly(t *testing.T) {
	d := testenv.Daytona(t, "k")
	if status, _ := deleteSandbox(t, d, "sb-unknown", "k"); status != 404 {
		t.Fatalf("unknown sandbox: %d", status)
	}
	d.AddSandbox("sb-known")
	if status, _ := deleteSandbox(t, d, "sb-known", "k"); status != 200 {
		t.Fatalf("known sandbox: %d", status)
	}
	if got := d.Teardowns(); len(got) != 1 || got[0] != "sb-known" {
		t.Fatalf("teardowns %v", got)
	}
}

// A stale emulator in .bin (another version, or not the emulator at all)
// is replaced by the pinned one; the pinned one is kept as it is.
func TestInstallRIEReplacesAnotherVersion(t *testing.T) {
	root := t.TempDir()
	self, err := os.Executable() // a Go binary, but not the emulator
	if err != nil {
		t.Fatal(err)
	}
	stale, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, ".bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := localstack.RIEPath(root)
	if err := os.WriteFile(path, stale, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got, err := localstack.InstallRIE(ctx, root)
	if err != nil || got != path {
		t.Fatalf("InstallRIE = %q, %v; want %q", got, err, path)
	}
	installed, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if installed.Size() == int64(len(stale)) {
		t.Fatal("the stale binary was kept")
	}
	if _, err := localstack.InstallRIE(ctx, root); err != nil {
		t.Fatal(err)
	}
	again, err := os.Stat(path)
	if err != nil || !os.SameFile(installed, again) || !again.ModTime().Equal(installed.ModTime()) {
		t.Fatalf("the pinned binary was installed again (%v)", err)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf(".bin holds %d entries, want only the emulator", len(entries))
	}
}

// pollWorld is a queue with a dead-letter queue and a Poller delivering
// its batches to handler.
func pollWorld(t *testing.T, handler localstack.EventHandler) (*localstack.Poller, func() int) {
	t.Helper()
	ep := testenv.SQS(t)
	queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 3)
	client := testenv.SQSClient(ep)
	for i := range 2 {
		if _, err := client.SendMessage(context.Background(), &awssqs.SendMessageInput{
			QueueUrl: aws.String(queueURL), MessageBody: aws.String(fmt.Sprintf(`{"n":%d}`, i)),
		}); err != nil {
			t.Fatal(err)
		}
	}
	p := &localstack.Poller{Client: client, QueueURL: queueURL, Region: localstack.SQSRegion, Handler: handler}
	return p, func() int { return testenv.QueueDepth(t, ep, queueURL) }
}

// Poll deletes what the handler acknowledged and keeps what it reported
// failed, whether the answer is a Go value or a function's JSON under the
// runtime emulator; a failed invocation deletes nothing.
func TestPollerAcknowledgesLikeTheEventSourceMapping(t *testing.T) {
	failFirst := func(event json.RawMessage) events.SQSEventResponse {
		var ev events.SQSEvent
		if err := json.Unmarshal(event, &ev); err != nil || len(ev.Records) == 0 {
			t.Errorf("not an SQS event: %v %s", err, event)
			return events.SQSEventResponse{}
		}
		return events.SQSEventResponse{BatchItemFailures: []events.SQSBatchItemFailure{{ItemIdentifier: ev.Records[0].MessageId}}}
	}
	tests := []struct {
		name      string
		handler   localstack.EventHandler
		wantErr   bool
		wantDepth int
	}{
		{"all acknowledged", func(context.Context, json.RawMessage) (any, error) { return events.SQSEventResponse{}, nil }, false, 0},
		{"one reported failed", func(_ context.Context, ev json.RawMessage) (any, error) { return failFirst(ev), nil }, false, 1},
		{"one reported failed, as JSON", func(_ context.Context, ev json.RawMessage) (any, error) {
			b, err := json.Marshal(failFirst(ev))
			return json.RawMessage(b), err
		}, false, 1},
		{"handler error under the emulator", func(context.Context, json.RawMessage) (any, error) {
			return json.RawMessage(`{"errorMessage":"boom","errorType":"errorString"}`), nil
		}, true, 2},
		{"handler error", func(context.Context, json.RawMessage) (any, error) { return nil, io.ErrUnexpectedEOF }, true, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, depth := pollWorld(t, tc.handler)
			delivered := 0
			for delivered < 2 {
				n, err := p.Poll(context.Background(), 2*time.Second)
				if (err != nil) != tc.wantErr {
					t.Fatalf("Poll: %v, want error %v", err, tc.wantErr)
				}
				if n == 0 {
					t.Fatalf("delivered %d of 2 messages", delivered)
				}
				delivered += n
			}
			// Kept messages stay in flight until their visibility timeout.
			if d := depth(); d != tc.wantDepth {
				t.Fatalf("queue depth %d after the batch, want %d", d, tc.wantDepth)
			}
		})
	}
}
