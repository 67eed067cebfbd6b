package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

// tryStep is one ready-to-paste request of the banner: a DELETE of thread,
// or, with bulk set, a multi-select POST of those ids.
type tryStep struct {
	what   string
	thread string
	auth   string // a header, complete
	bulk   []string
}

// trySteps are the banner's requests, in an order that tells the story:
// ordinary deletes, the refusals, then the project's last thread, whose
// delete makes the worker tear the sandbox down.
func trySteps() ([]tryStep, error) {
	tok := map[string]string{}
	for name, id := range localstack.Users {
		t, err := localstack.Token(localstack.JWTSecret, id, localstack.TokenTTL)
		if err != nil {
			return nil, err
		}
		tok[name] = "Authorization: Bearer " + t
	}
	return []tryStep{
		{"the owner deletes a thread → 200", localstack.ThreadID, tok["owner"], nil},
		{"the demo account's API key deletes another → 200", localstack.SecondThreadID, "X-API-Key: " + localstack.APIKey, nil},
		{"multi-select: the owner deletes the Notes thread (its agent is told to STOP, its project goes),\n#    is refused the Other Team's thread, and the thread of step 2 is gone already → 200", "", tok["owner"],
			[]string{localstack.NotesThreadID, localstack.OtherThreadID, localstack.SecondThreadID}},
		{"the owner tries the Other Team's thread → 403", localstack.OtherThreadID, tok["owner"], nil},
		{"a user of no account tries the demo thread → 403", localstack.LastThreadID, tok["stranger"], nil},
		{"not a UUID → 400", "not-a-uuid", tok["owner"], nil},
		{"no credentials → 401", localstack.LastThreadID, "", nil},
		{"a member deletes the project's last thread (and its sub-agent thread, whose agent is told to STOP) → 200;\n#    the project goes too, and the worker tears sandbox " + localstack.SandboxID + " down (see the DEV DAYTONA STAND-IN log line)", localstack.LastThreadID, tok["member"], nil},
		{"already deleted → 404", localstack.ThreadID, tok["owner"], nil},
	}, nil
}

// curlLine renders one request.
func curlLine(apiURL string, s tryStep) string {
	line := "curl -i -X DELETE " + apiURL + "/threads/" + s.thread
	if s.bulk != nil {
		line = "curl -i -X POST " + apiURL + "/threads/bulk-delete"
	}
	if s.auth != "" {
		line += ` -H "` + s.auth + `"`
	}
	if s.bulk != nil {
		body, _ := json.Marshal(map[string][]string{"thread_ids": s.bulk})
		line += ` -H "Content-Type: application/json" -d '` + string(body) + `'`
	}
	return line
}

// printBanner says where everything runs and how to try it.
func printBanner(w io.Writer, st *Stack) error {
	steps, err := trySteps()
	if err != nil {
		return err
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	sqsWhere := st.SQSEndpoint + " (existing emulator)"
	if st.Fauxqs != nil {
		sqsWhere = fmt.Sprintf("%s (fauxqs, pid %d)", st.SQSEndpoint, st.Fauxqs.PID())
	}
	p("")
	p("==================== thread-delete dev stack — LOCAL DEVELOPMENT ONLY ====================")
	p("API         %s   DELETE /threads/{thread_id}, POST /threads/bulk-delete → API Gateway v2 event → delete-thread handler", st.APIURL)
	p("PostgreSQL  %s   (Kortix fixture + migrations, demo data reseeded)", localstack.Redact(st.DatabaseURL))
	p("Redis       %s", localstack.Redact(st.RedisURL))
	if c := st.Mirror.CORS; c != nil {
		p("CORS        origins %s (%s) · methods %s · headers %s (template.yaml)",
			strings.Join(c.Origins, ","), corsOriginsEnv, strings.Join(c.Methods, ","), strings.Join(c.Headers, ","))
	}
	p("SQS         %s", sqsWhere)
	p("            queue %s (%s)", st.Queues.URL, queueAttrs(st.Mirror.Queue.Attributes))
	p("            DLQ   %s (after %d receives; %s)", st.Queues.DLQURL, st.Mirror.Queue.MaxReceiveCount, queueAttrs(st.Mirror.DLQ.Attributes))
	p("Worker      sandbox-cleanup handler long-polling the queue; outbox sweep every 30s")
	p("Daytona     %s   DEV-ONLY STAND-IN: logs the teardowns it receives, destroys nothing", st.Daytona.URL)
	p("")
	p("Demo data: account \"Demo Team\" (owner %s, member %s, an API key),", localstack.OwnerUserID, localstack.MemberUserID)
	p("  project \"Demo project\" with sandbox %s and 3 threads (one with a sub-agent thread),", localstack.SandboxID)
	p("  project \"Notes\" with 1 thread; account \"Other Team\" with 1 thread.")
	p("  %d threads, %d messages, %d agent runs. Every start reseeds them.", st.Seed.Threads, st.Seed.Messages, st.Seed.Runs)
	p("")
	p("Try it (the tokens are valid for %d hours; run the lines in this order):", int(localstack.TokenTTL.Hours()))
	p("")
	p("# In another terminal, watch the stop signals sent to the agents of deleted threads:")
	p("redis-cli -u %s psubscribe 'agent_run:*:control'", localstack.Redact(st.RedisURL))
	p("")
	for i, s := range steps {
		p("# %d. %s", i+1, s.what)
		p("%s", curlLine(st.APIURL, s))
		p("")
	}
	threads, projects := localstack.DemoCounts(localstack.DemoAccountID)
	p("# Redis counters of the demo account (%d threads, %d projects at start):", threads, len(projects))
	p("redis-cli -u %s mget thread_count:%s project_count:%s", localstack.Redact(st.RedisURL), localstack.DemoAccountID, localstack.DemoAccountID)
	p("")
	p("Ctrl-C stops everything this started.")
	p("==========================================================================================")
	_, err = io.WriteString(w, b.String())
	return err
}

// queueAttrs lists queue attributes as template.yaml sets them.
func queueAttrs(attrs map[string]string) string {
	names := slices.Sorted(maps.Keys(attrs))
	for i, k := range names {
		names[i] = k + " " + attrs[k]
	}
	return strings.Join(names, ", ")
}
