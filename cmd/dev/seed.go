package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	d "github.com/kortix-ai/thread-delete/internal/localstack/devenv"
)

// demoThread is one seeded conversation.
type demoThread struct {
	id, account, project, parent, name string
	messages                           []demoMessage
	runs                               []string // agent run statuses
	documents                          int      // vector-store chunks
}

type demoMessage struct{ typ, text string }

func user(s string) demoMessage      { return demoMessage{"user", s} }
func assistant(s string) demoMessage { return demoMessage{"assistant", s} }

// demoThreads is the seeded content, parents before children.
var demoThreads = []demoThread{
	{id: d.ThreadID, account: d.DemoAccountID, project: d.SandboxProjectID, name: "Plan a weekend in Lisbon",
		messages: []demoMessage{
			user("Plan a relaxed weekend in Lisbon for two."),
			assistant("Day 1: Alfama and the castle; day 2: Belém and a sunset at LX Factory."),
			user("Add a good place for pastéis de nata."),
			assistant("Pastéis de Belém opens at 8:00; go early to skip the queue."),
		},
		runs: []string{"completed", "completed"}, documents: 2},
	{id: d.SecondThreadID, account: d.DemoAccountID, project: d.SandboxProjectID, name: "Summarise the quarterly report",
		messages: []demoMessage{
			user("Summarise report-q3.pdf in five bullet points."),
			assistant("Revenue +12%, churn down to 3.1%, two new regions, hiring paused, outlook stable."),
		},
		runs: []string{"completed"}},
	{id: d.LastThreadID, account: d.DemoAccountID, project: d.SandboxProjectID, name: "Build a landing page",
		messages: []demoMessage{
			user("Build a landing page for our coffee subscription."),
			assistant("I started a sub-agent for the styles and wrote index.html in the sandbox."),
			user("Make the hero image full width."),
		},
		runs: []string{"completed", "failed", "completed"}},
	{id: d.SubAgentThreadID, account: d.DemoAccountID, project: d.SandboxProjectID, parent: d.LastThreadID, name: "Sub-agent: write the CSS",
		messages: []demoMessage{
			user("Write styles.css for the landing page: warm colours, mobile first."),
			assistant("Done: styles.css with a full-width hero and a 3-column plan grid above 768px."),
		},
		runs: []string{"completed", "running"}},
	{id: d.NotesThreadID, account: d.DemoAccountID, project: d.NotesProjectID, name: "Grocery list",
		messages: []demoMessage{
			user("Keep a grocery list: oat milk, coffee beans, lemons."),
			assistant("Saved. Anything else?"),
		},
		runs: []string{"completed", "running"}},
	{id: d.OtherThreadID, account: d.OtherAccountID, project: d.OtherProjectID, name: "Other team's roadmap",
		messages: []demoMessage{
			user("Draft next quarter's roadmap."),
			assistant("Q1: onboarding revamp; Q2: billing v2; Q3: mobile app beta."),
		},
		runs: []string{"completed"}},
}

// SeedSummary says what the seed wrote, for the banner.
type SeedSummary struct {
	Threads, Messages, Runs int
}

// Seed replaces the demo rows (fixed ids, see devenv) with a fresh copy, in
// one transaction, and sets the demo accounts' Redis counters and caches.
// Rows that are not demo rows are left alone, and so are pending outbox rows
// of other accounts.
func Seed(ctx context.Context, dbURL string, rdb goredis.UniversalClient) (SeedSummary, error) {
	var sum SeedSummary
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return sum, fmt.Errorf("seed: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	accounts := []string{d.DemoAccountID, d.OtherAccountID}
	users := []string{d.OwnerUserID, d.MemberUserID, d.OtherUserID, d.StrangerUserID}
	var threadIDs []string
	for _, t := range demoThreads {
		threadIDs = append(threadIDs, t.id)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		steps := []struct {
			sql  string
			args []any
		}{
			// Remove the previous copy. Agent runs first: their foreign key
			// has no ON DELETE action and would block the cascades.
			{`DELETE FROM thread_delete.outbox
			   WHERE payload->>'account_id' = ANY($1::text[])
			      OR payload->'thread_ids' ?| $2::text[]`, []any{accounts, threadIDs}},
			{`DELETE FROM public.agent_runs WHERE thread_id IN (
				SELECT thread_id FROM public.threads
				 WHERE account_id = ANY($1::uuid[]) OR thread_id = ANY($2::uuid[])
				    OR project_id IN (SELECT project_id FROM public.projects WHERE account_id = ANY($1::uuid[])))`, []any{accounts, threadIDs}},
			{`DELETE FROM public.threads WHERE thread_id = ANY($1::uuid[])`, []any{threadIDs}},
			{`DELETE FROM public.api_keys WHERE public_key = $1`, []any{d.APIKeyPublic}},
			{`DELETE FROM basejump.accounts WHERE id = ANY($1::uuid[])`, []any{accounts}}, // cascades to projects, resources, members
			{`DELETE FROM public.user_roles WHERE user_id = ANY($1::uuid[])`, []any{users}},

			{`INSERT INTO basejump.accounts (id, primary_owner_user_id, name, slug, personal_account) VALUES
				($1, $2, 'Demo Team', 'dev-demo-team', false),
				($3, $4, 'Other Team', 'dev-other-team', false)`, []any{d.DemoAccountID, d.OwnerUserID, d.OtherAccountID, d.OtherUserID}},
			{`INSERT INTO basejump.account_user (user_id, account_id, account_role) VALUES
				($1, $2, 'owner'), ($3, $2, 'member'), ($4, $5, 'owner')`, []any{d.OwnerUserID, d.DemoAccountID, d.MemberUserID, d.OtherUserID, d.OtherAccountID}},
			{`INSERT INTO public.user_roles (user_id, role) VALUES ($1, 'user'), ($2, 'user'), ($3, 'user')`, []any{d.OwnerUserID, d.MemberUserID, d.OtherUserID}},
			{`INSERT INTO public.resources (id, account_id, type, external_id, status, config)
				VALUES ($1, $2, 'sandbox', $3, 'active', '{"image": "kortix/suna:dev", "dev_stand_in": true}')`, []any{d.SandboxResourceID, d.DemoAccountID, d.SandboxID}},
			{`INSERT INTO public.projects (project_id, name, description, account_id, sandbox_resource_id) VALUES
				($1, 'Demo project', 'Three threads and a sandbox', $2, $3),
				($4, 'Notes', 'No sandbox', $2, NULL),
				($5, 'Other team''s project', 'Not yours', $6, NULL)`,
				[]any{d.SandboxProjectID, d.DemoAccountID, d.SandboxResourceID, d.NotesProjectID, d.OtherProjectID, d.OtherAccountID}},
			{`INSERT INTO public.api_keys (public_key, secret_key_hash, account_id, title, status)
				VALUES ($1, $2, $3, 'Dev demo key', 'active')`, []any{d.APIKeyPublic, d.APIKeyHash(), d.DemoAccountID}},
		}
		for _, s := range steps {
			if _, err := tx.Exec(ctx, s.sql, s.args...); err != nil {
				return err
			}
		}
		for _, t := range demoThreads {
			if err := seedThread(ctx, tx, t); err != nil {
				return err
			}
			sum.Threads++
			sum.Messages += len(t.messages)
			sum.Runs += len(t.runs)
		}
		return nil
	})
	if err != nil {
		return sum, fmt.Errorf("seed: %w", err)
	}
	return sum, seedRedis(ctx, rdb)
}

func seedThread(ctx context.Context, tx pgx.Tx, t demoThread) error {
	var parent any
	if t.parent != "" {
		parent = t.parent
	}
	if _, err := tx.Exec(ctx, `INSERT INTO public.threads (thread_id, account_id, project_id, parent_thread_id, name)
		VALUES ($1, $2, $3, $4, $5)`, t.id, t.account, t.project, parent, t.name); err != nil {
		return err
	}
	types, texts := make([]string, len(t.messages)), make([]string, len(t.messages))
	for i, m := range t.messages {
		types[i], texts[i] = m.typ, m.text
	}
	// Spread the messages over the last minutes, so they read in order.
	if _, err := tx.Exec(ctx, `INSERT INTO public.messages (thread_id, type, is_llm_message, content, created_at)
		SELECT $1, m.typ, m.typ <> 'user', jsonb_build_object('role', m.typ, 'content', m.txt),
		       now() - make_interval(mins => (cardinality($2::text[]) - m.n)::int)
		  FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS m(typ, txt, n)`, t.id, types, texts); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO public.agent_runs (thread_id, status, completed_at, error)
		SELECT $1, s, CASE WHEN s <> 'running' THEN now() END, CASE WHEN s = 'failed' THEN 'demo: model timed out' END
		  FROM unnest($2::text[]) AS s`, t.id, t.runs); err != nil {
		return err
	}
	if t.documents > 0 {
		if _, err := tx.Exec(ctx, `INSERT INTO public.documents (account_id, thread_id, chunk_content, embedding)
			SELECT $1, $2, 'chunk ' || g, ARRAY[0.1, 0.2, 0.3]::real[] FROM generate_series(1, $3::int) g`,
			t.account, t.id, t.documents); err != nil {
			return err
		}
	}
	return nil
}

// seedRedis sets what Kortix keeps in Redis for the demo accounts: the plan
// counters the delete decrements and the caches it drops, so that their
// change is visible with redis-cli.
func seedRedis(ctx context.Context, rdb goredis.UniversalClient) error {
	threadsOf := map[string]int{}
	projectsOf := map[string]map[string]bool{}
	for _, t := range demoThreads {
		threadsOf[t.account]++
		if projectsOf[t.account] == nil {
			projectsOf[t.account] = map[string]bool{}
		}
		projectsOf[t.account][t.project] = true
	}
	_, err := rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for account, n := range threadsOf {
			p.Set(ctx, "thread_count:"+account, strconv.Itoa(n), 0)
			p.Set(ctx, "project_count:"+account, strconv.Itoa(len(projectsOf[account])), 0)
			state, _ := json.Marshal(map[string]any{"plan": "free", "threads": n, "cached_at": time.Now().UTC().Format(time.RFC3339)})
			p.Set(ctx, "cache:account_state:"+account, string(state), 0)
			for project := range projectsOf[account] {
				p.Set(ctx, "project_meta:"+project, `{"dev_demo": true}`, 0)
			}
		}
		for _, t := range demoThreads {
			p.Set(ctx, "message_history:"+t.id, fmt.Sprintf(`{"messages": %d}`, len(t.messages)), 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("seed: Redis: %w", err)
	}
	return nil
}
