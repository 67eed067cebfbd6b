package localstack

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
)

// demoThread is one seeded conversation.
type demoThread struct {
	Thread
	messages  []Message
	runs      []string // agent run statuses
	documents int      // vector-store chunks
}

func user(s string) Message      { return Message{"user", s} }
func assistant(s string) Message { return Message{"assistant", s} }

// demoThreads is the seeded content, parents before children.
var demoThreads = []demoThread{
	{Thread: Thread{ID: ThreadID, Account: DemoAccountID, Project: SandboxProjectID, Name: "Plan a weekend in Lisbon"},
		messages: []Message{
			user("Plan a relaxed weekend in Lisbon for two."),
			assistant("Day 1: Alfama and the castle; day 2: Belém and a sunset at LX Factory."),
			user("Add a good place for pastéis de nata."),
			assistant("Pastéis de Belém opens at 8:00; go early to skip the queue."),
		},
		runs: []string{"completed", "completed"}, documents: 2},
	{Thread: Thread{ID: SecondThreadID, Account: DemoAccountID, Project: SandboxProjectID, Name: "Summarise the quarterly report"},
		messages: []Message{
			user("Summarise report-q3.pdf in five bullet points."),
			assistant("Revenue +12%, churn down to 3.1%, two new regions, hiring paused, outlook stable."),
		},
		runs: []string{"completed"}},
	{Thread: Thread{ID: LastThreadID, Account: DemoAccountID, Project: SandboxProjectID, Name: "Build a landing page"},
		messages: []Message{
			user("Build a landing page for our coffee subscription."),
			assistant("I started a sub-agent for the styles and wrote index.html in the sandbox."),
			user("Make the hero image full width."),
		},
		runs: []string{"completed", "failed", "completed"}},
	{Thread: Thread{ID: SubAgentThreadID, Account: DemoAccountID, Project: SandboxProjectID, Parent: LastThreadID, Name: "Sub-agent: write the CSS"},
		messages: []Message{
			user("Write styles.css for the landing page: warm colours, mobile first."),
			assistant("Done: styles.css with a full-width hero and a 3-column plan grid above 768px."),
		},
		runs: []string{"completed", "running"}},
	{Thread: Thread{ID: NotesThreadID, Account: DemoAccountID, Project: NotesProjectID, Name: "Grocery list"},
		messages: []Message{
			user("Keep a grocery list: oat milk, coffee beans, lemons."),
			assistant("Saved. Anything else?"),
		},
		runs: []string{"completed", "running"}},
	{Thread: Thread{ID: OtherThreadID, Account: OtherAccountID, Project: OtherProjectID, Name: "Other team's roadmap"},
		messages: []Message{
			user("Draft next quarter's roadmap."),
			assistant("Q1: onboarding revamp; Q2: billing v2; Q3: mobile app beta."),
		},
		runs: []string{"completed"}},
}

// demoAccounts, demoProjects and the rest are the demo rows around the
// threads.
var (
	demoAccounts = []Account{
		{ID: DemoAccountID, Owner: OwnerUserID, Name: "Demo Team", Slug: "dev-demo-team"},
		{ID: OtherAccountID, Owner: OtherUserID, Name: "Other Team", Slug: "dev-other-team"},
	}
	demoSandbox  = Sandbox{ID: SandboxResourceID, Account: DemoAccountID, ExternalID: SandboxID, Config: `{"image": "kortix/suna:dev", "dev_stand_in": true}`}
	demoProjects = []Project{
		{ID: SandboxProjectID, Account: DemoAccountID, Name: "Demo project", Description: "Three threads and a sandbox", ResourceID: SandboxResourceID},
		{ID: NotesProjectID, Account: DemoAccountID, Name: "Notes", Description: "No sandbox"},
		{ID: OtherProjectID, Account: OtherAccountID, Name: "Other team's project", Description: "Not yours"},
	}
)

// DemoSummary says what SeedDemo wrote.
type DemoSummary struct {
	Threads, Messages, Runs int
}

// SeedDemo replaces the demo rows (fixed ids, see demo.go) with a fresh
// copy, in one transaction, and sets the demo accounts' Redis counters and
// caches. Rows that are not demo rows are left alone, and so are pending
// outbox rows of other accounts.
func SeedDemo(ctx context.Context, dbURL string, rdb goredis.UniversalClient) (DemoSummary, error) {
	var sum DemoSummary
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return sum, fmt.Errorf("seed: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	accounts := []string{DemoAccountID, OtherAccountID}
	users := []string{OwnerUserID, MemberUserID, OtherUserID, StrangerUserID}
	var threadIDs []string
	for _, t := range demoThreads {
		threadIDs = append(threadIDs, t.ID)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Remove the previous copy. Agent runs first: their foreign key has
		// no ON DELETE action and would block the cascades.
		for _, s := range []struct {
			sql  string
			args []any
		}{
			{`DELETE FROM thread_delete.outbox
			   WHERE payload->>'account_id' = ANY($1::text[])
			      OR payload->'thread_ids' ?| $2::text[]`, []any{accounts, threadIDs}},
			{`DELETE FROM public.agent_runs WHERE thread_id IN (
				SELECT thread_id FROM public.threads
				 WHERE account_id = ANY($1::uuid[]) OR thread_id = ANY($2::uuid[])
				    OR project_id IN (SELECT project_id FROM public.projects WHERE account_id = ANY($1::uuid[])))`, []any{accounts, threadIDs}},
			{`DELETE FROM public.threads WHERE thread_id = ANY($1::uuid[])`, []any{threadIDs}},
			{`DELETE FROM public.api_keys WHERE public_key = $1`, []any{APIKeyPublic}},
			{`DELETE FROM basejump.accounts WHERE id = ANY($1::uuid[])`, []any{accounts}}, // cascades to projects, resources, members
			{`DELETE FROM public.user_roles WHERE user_id = ANY($1::uuid[])`, []any{users}},
		} {
			if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
				return err
			}
		}
		return insertDemoRows(ctx, tx, &sum)
	})
	if err != nil {
		return sum, fmt.Errorf("seed: %w", err)
	}
	return sum, seedDemoRedis(ctx, rdb)
}

// insertDemoRows writes the demo rows into an empty place.
func insertDemoRows(ctx context.Context, db Execer, sum *DemoSummary) error {
	for _, a := range demoAccounts {
		if err := InsertAccount(ctx, db, a); err != nil {
			return err
		}
	}
	if err := InsertMember(ctx, db, DemoAccountID, MemberUserID, "member"); err != nil {
		return err
	}
	for _, u := range []string{OwnerUserID, MemberUserID, OtherUserID} {
		if err := InsertRole(ctx, db, u, "user"); err != nil {
			return err
		}
	}
	if err := InsertSandbox(ctx, db, demoSandbox); err != nil {
		return err
	}
	for _, p := range demoProjects {
		if err := InsertProject(ctx, db, p); err != nil {
			return err
		}
	}
	if err := InsertAPIKey(ctx, db, APIKeyRow{Public: APIKeyPublic, Hash: APIKeyHash(), Account: DemoAccountID, Title: "Dev demo key", Status: "active"}); err != nil {
		return err
	}
	for _, t := range demoThreads {
		if err := InsertThread(ctx, db, t.Thread); err != nil {
			return err
		}
		if err := InsertMessages(ctx, db, t.ID, t.messages); err != nil {
			return err
		}
		for _, status := range t.runs {
			r := Run{Thread: t.ID, Status: status}
			if status == "failed" {
				r.Error = "demo: model timed out"
			}
			if err := InsertRun(ctx, db, r); err != nil {
				return err
			}
		}
		if err := FillThread(ctx, db, t.ID, 0, 0, t.documents); err != nil {
			return err
		}
		sum.Threads++
		sum.Messages += len(t.messages)
		sum.Runs += len(t.runs)
	}
	return nil
}

// seedDemoRedis sets what Kortix keeps in Redis for the demo accounts: the
// plan counters the delete decrements and the caches it drops, so that
// their change is visible with redis-cli.
func seedDemoRedis(ctx context.Context, rdb goredis.UniversalClient) error {
	_, err := rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, a := range demoAccounts {
			threads, projects := DemoCounts(a.ID)
			p.Set(ctx, "thread_count:"+a.ID, strconv.Itoa(threads), 0)
			p.Set(ctx, "project_count:"+a.ID, strconv.Itoa(len(projects)), 0)
			state, _ := json.Marshal(map[string]any{"plan": "free", "threads": threads, "cached_at": time.Now().UTC().Format(time.RFC3339)})
			p.Set(ctx, "cache:account_state:"+a.ID, string(state), 0)
			for _, project := range projects {
				p.Set(ctx, "project_meta:"+project, `{"dev_demo": true}`, 0)
			}
		}
		for _, t := range demoThreads {
			p.Set(ctx, "message_history:"+t.ID, fmt.Sprintf(`{"messages": %d}`, len(t.messages)), 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed: Redis: %w", err)
	}
	return nil
}

// DemoCounts returns how many demo threads account has, and the projects
// they are in: what SeedDemo sets its thread_count and project_count to.
func DemoCounts(account string) (threads int, projects []string) {
	seen := map[string]bool{}
	for _, t := range demoThreads {
		if t.Account != account {
			continue
		}
		threads++
		if !seen[t.Project] {
			seen[t.Project] = true
			projects = append(projects, t.Project)
		}
	}
	return threads, projects
}

// DemoThreadCount is how many threads SeedDemo writes.
func DemoThreadCount() int { return len(demoThreads) }
