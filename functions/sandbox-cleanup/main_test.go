package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/sqs"
	"github.com/kortix-ai/thread-delete/shared/threads"
)

const apiKey = "fn-test-daytona-key"

// baseEnv is a complete, valid configuration pointing at ports where
// nothing listens; tests override what they need.
func baseEnv() map[string]string {
	return map[string]string{
		"DATABASE_URL":              "postgres://postgres@127.0.0.1:1/none?sslmode=disable",
		"REDIS_URL":                 "redis://127.0.0.1:1/0",
		"DAYTONA_SERVER_URL":        "http://127.0.0.1:1/api",
		"DAYTONA_API_KEY":           apiKey,
		"DAYTONA_ORGANIZATION_ID":   "",
		"SANDBOX_CLEANUP_QUEUE_URL": "http://127.0.0.1:1/000000000000/q",
		"OUTBOX_RESEND_AFTER":       "",
		"DB_SECRET_ARN":             "",
		"DB_IAM_AUTH":               "",
		"REDIS_CLUSTER":             "",
		"AWS_ENDPOINT_URL_SQS":      "http://127.0.0.1:1",
		"AWS_REGION":                "us-east-1",
		"AWS_ACCESS_KEY_ID":         "test",
		"AWS_SECRET_ACCESS_KEY":     "test",
	}
}

func envList(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func TestInitFailsWithOneLineNamingTheVariable(t *testing.T) {
	bin := testenv.Build(t, "sandbox-cleanup")
	tests := []struct {
		set     map[string]string
		wantVar string
	}{
		{map[string]string{"DAYTONA_API_KEY": ""}, "DAYTONA_API_KEY"},
		{map[string]string{"DAYTONA_SERVER_URL": ""}, "DAYTONA_SERVER_URL"},
		{map[string]string{"DAYTONA_SERVER_URL": "app.daytona.io"}, "DAYTONA_SERVER_URL"},
		{map[string]string{"DATABASE_URL": ""}, "DATABASE_URL"},
		{map[string]string{"REDIS_URL": ""}, "REDIS_URL"},
		{map[string]string{"SANDBOX_CLEANUP_QUEUE_URL": ""}, "SANDBOX_CLEANUP_QUEUE_URL"},
		{map[string]string{"OUTBOX_RESEND_AFTER": "five minutes"}, "OUTBOX_RESEND_AFTER"},
		{map[string]string{"OUTBOX_RESEND_AFTER": "-1m"}, "OUTBOX_RESEND_AFTER"},
	}
	for _, tc := range tests {
		env := baseEnv()
		for k, v := range tc.set {
			env[k] = v
		}
		// Init runs before the runtime API is contacted, so the binary can
		// run on its own here.
		cmd := exec.Command(bin)
		cmd.Env = append(cmd.Environ(), envList(env)...)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%v: init succeeded", tc.set)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], tc.wantVar) {
			t.Errorf("%v: output %q, want one line naming %s", tc.set, out, tc.wantVar)
		}
		if strings.Contains(string(out), apiKey) {
			t.Errorf("%v: output leaks the API key", tc.set)
		}
	}
}

// With every dependency unreachable, init still succeeds (it does no I/O)
// and a batch of undecodable messages is answered without touching them.
func TestInitDoesNoIO(t *testing.T) {
	bin := testenv.Build(t, "sandbox-cleanup")
	fn := testenv.StartLambda(t, bin, envList(baseEnv()))
	start := time.Now()
	out := fn.Invoke(t, []byte(`{"Records":[{"messageId":"m1","body":"garbage","eventSource":"aws:sqs"}]}`))
	if string(out) != `{"batchItemFailures":[{"itemIdentifier":"m1"}]}` {
		t.Fatalf("response %s\n%s", out, fn.Logs())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("first invoke took %s", d)
	}
	// A database outage fails the items, not the function.
	jobID := testenv.NewUUID()
	body, _ := sqs.Encode(sqs.TeardownMessage(threads.Teardown{JobID: jobID, SandboxID: "sb"}))
	ev, _ := json.Marshal(map[string]any{"Records": []map[string]any{{"messageId": "m2", "body": string(body), "eventSource": "aws:sqs"}}})
	out = fn.Invoke(t, ev)
	if string(out) != `{"batchItemFailures":[{"itemIdentifier":"m2"}]}` {
		t.Fatalf("response %s", out)
	}
	// An unknown event shape is a function error.
	if out := fn.Invoke(t, []byte(`{"hello":"world"}`)); !strings.Contains(string(out), "errorMessage") {
		t.Fatalf("unsupported event answered %s", out)
	}
}

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	dbURL := testenv.Database(t)
	seed := testenv.Seeder{TB: t, Pool: testenv.Pool(t, dbURL)}
	redisURL, rdb := testenv.Redis(t)
	ep := testenv.SQS(t)
	queueURL, _ := testenv.Queue(t, ep, 30*time.Second, 0)
	dt := testenv.Daytona(t, apiKey)

	env := baseEnv()
	env["DATABASE_URL"] = dbURL
	env["REDIS_URL"] = redisURL
	env["DAYTONA_SERVER_URL"] = dt.URL + "/"
	env["DAYTONA_ORGANIZATION_ID"] = "org-7"
	env["SANDBOX_CLEANUP_QUEUE_URL"] = queueURL
	env["AWS_ENDPOINT_URL_SQS"] = ep
	env["OUTBOX_RESEND_AFTER"] = "1m"
	fn := testenv.StartLambda(t, testenv.Build(t, "sandbox-cleanup"), envList(env))

	insert := func(kind string, payload any) string {
		b, _ := json.Marshal(payload)
		var id string
		if err := seed.Pool.QueryRow(ctx, `INSERT INTO thread_delete.outbox (kind, payload) VALUES ($1, $2::jsonb) RETURNING id::text`, kind, string(b)).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}

	// A teardown, as a project delete leaves it.
	acct := seed.PersonalAccount()
	td := threads.Teardown{ProjectID: testenv.NewUUID(), AccountID: acct, SandboxID: "sb-e2e", ThreadID: testenv.NewUUID(), RequestedAt: time.Now()}
	td.ResourceID = seed.Sandbox(acct, td.SandboxID)
	dt.AddSandbox(td.SandboxID)
	td.JobID = insert("sandbox_teardown", td)

	// A cache repair an earlier version recorded because Redis was down
	// during the delete, still on the queue.
	deleted := testenv.NewUUID()
	repairID := insert("cache_repair", map[string]any{"key": deleted, "account_id": acct, "project_id": td.ProjectID,
		"thread_ids": []string{deleted}, "project_deleted": true})
	rdb.Set(ctx, "thread_count:"+acct, 3, 0)
	rdb.Set(ctx, "project_count:"+acct, 1, 0)
	rdb.Set(ctx, "cache:account_state:"+acct, "{}", 0)
	rdb.Set(ctx, "message_history:"+deleted, "[]", 0)
	rdb.Set(ctx, "project_meta:"+td.ProjectID, "{}", 0)

	tdBody, _ := sqs.Encode(sqs.TeardownMessage(td))
	repairBody, _ := sqs.Encode(sqs.Message{Version: 1, Kind: sqs.KindCacheRepair, JobID: repairID})
	ev, _ := json.Marshal(map[string]any{"Records": []map[string]any{
		{"messageId": "t", "body": string(tdBody), "eventSource": "aws:sqs"},
		{"messageId": "r", "body": string(repairBody), "eventSource": "aws:sqs"},
		{"messageId": "t-dup", "body": string(tdBody), "eventSource": "aws:sqs"},
	}})
	out := fn.Invoke(t, ev)
	var resp struct {
		BatchItemFailures []struct {
			ItemIdentifier string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("response %s\n%s", out, fn.Logs())
	}
	// One of the two deliveries of the teardown may be told to come back
	// later (it found the row leased by the other); nothing else fails.
	if n := len(resp.BatchItemFailures); n > 1 || n == 1 && resp.BatchItemFailures[0].ItemIdentifier == "r" {
		t.Fatalf("response %s\n%s", out, fn.Logs())
	}
	if dt.Exists(td.SandboxID) || dt.Calls(td.SandboxID) != 1 || dt.LastHeader().Get("X-Daytona-Organization-ID") != "org-7" {
		t.Fatalf("Daytona: exists %v, %d calls, headers %v", dt.Exists(td.SandboxID), dt.Calls(td.SandboxID), dt.LastHeader())
	}
	if n := seed.Count(`SELECT count(*) FROM public.resources WHERE id = $1 AND status = 'deleted'`, td.ResourceID); n != 1 {
		t.Fatal("resource not marked deleted")
	}
	if n := seed.Count(`SELECT count(*) FROM thread_delete.outbox WHERE status = 'done' AND id IN ($1, $2)`, td.JobID, repairID); n != 2 {
		t.Fatalf("%d of 2 outbox rows done\n%s", n, fn.Logs())
	}
	// The repair form: the counters are deleted for Kortix to rebuild.
	if n := rdb.Exists(ctx, "thread_count:"+acct, "project_count:"+acct).Val(); n != 0 {
		t.Fatalf("%d counters survived the repair", n)
	}
	if n := rdb.Exists(ctx, "cache:account_state:"+acct, "message_history:"+deleted, "project_meta:"+td.ProjectID).Val(); n != 0 {
		t.Fatalf("%d cache keys survived", n)
	}

	// The schedule: an overdue pending row is re-sent to the queue.
	stuck := insert("sandbox_teardown", threads.Teardown{SandboxID: "sb-stuck", AccountID: acct})
	seed.Exec(`UPDATE thread_delete.outbox SET next_attempt_at = now() - interval '2 minutes' WHERE id = $1`, stuck)
	fresh := insert("sandbox_teardown", threads.Teardown{SandboxID: "sb-fresh", AccountID: acct})
	// ... and the Redis work of a delete whose inline application never
	// happened is completed in place once its grace has passed.
	other, thread, run := testenv.NewUUID(), testenv.NewUUID(), testenv.NewUUID()
	work := insert("redis_work", threads.CacheWork{Accounts: []threads.AccountDelta{{AccountID: other, Threads: 1}},
		ThreadIDs: []string{thread}, StopRuns: []string{run}})
	seed.Exec(`UPDATE thread_delete.outbox SET created_at = now() - interval '2 minutes' WHERE id = $1`, work)
	rdb.Set(ctx, "thread_count:"+other, 4, 0)
	rdb.Set(ctx, "message_history:"+thread, "[]", 0)
	stop := rdb.Subscribe(ctx, "agent_run:"+run+":control")
	defer stop.Close()
	if _, err := stop.Receive(ctx); err != nil { // the subscription is confirmed
		t.Fatal(err)
	}
	out = fn.Invoke(t, []byte(`{"version":"0","id":"1","detail-type":"Scheduled Event","source":"aws.events","account":"123456789012","time":"2025-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{}}`))
	if string(out) != `{"resent":1,"failed":0,"dead":0,"cache_done":1,"cache_failed":0,"pruned":0}` {
		t.Fatalf("sweep answered %s\n%s", out, fn.Logs())
	}
	if n := seed.Count(`SELECT count(*) FROM thread_delete.outbox WHERE id = $1 AND status = 'done'`, work); n != 1 {
		t.Fatal("redis work row not done")
	}
	if n := rdb.Exists(ctx, "thread_count:"+other, "message_history:"+thread).Val(); n != 0 {
		t.Fatalf("%d keys survived the repair", n)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if msg, err := stop.ReceiveMessage(rctx); err != nil || msg.Payload != "STOP" {
		t.Fatalf("agent run told %v (%v), want STOP", msg, err)
	}
	msgs, err := testenv.SQSClient(ep).ReceiveMessage(ctx, &awssqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 2})
	if err != nil || len(msgs.Messages) != 1 {
		t.Fatalf("queue: %v %v", msgs, err)
	}
	if m, err := sqs.Parse([]byte(aws.ToString(msgs.Messages[0].Body))); err != nil || m.JobID != stuck || m.SandboxID != "sb-stuck" {
		t.Fatalf("re-sent %+v %v (fresh row %s must stay)", m, err, fresh)
	}
}
