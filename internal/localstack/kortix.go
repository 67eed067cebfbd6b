package localstack

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Execer is what the Kortix writers below write through: a pool, a
// connection or a transaction.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// The writers below insert Kortix rows the way Kortix creates them; the
// dev stack's demo data (SeedDemo) and the tests' rows (testenv.Seeder)
// are both made of them. An empty string id is SQL NULL where the column
// allows it.

// Account is a basejump account. A personal account's id is its user's id.
type Account struct {
	ID, Owner, Name, Slug string
	Personal              bool
}

// InsertAccount creates the account and makes its owner a member with the
// owner role, as basejump does.
func InsertAccount(ctx context.Context, db Execer, a Account) error {
	if _, err := db.Exec(ctx, `INSERT INTO basejump.accounts (id, primary_owner_user_id, name, slug, personal_account) VALUES ($1, $2, $3, $4, $5)`,
		a.ID, a.Owner, a.Name, a.Slug, a.Personal); err != nil {
		return fmt.Errorf("account %s: %w", a.ID, err)
	}
	return InsertMember(ctx, db, a.ID, a.Owner, "owner")
}

// InsertMember adds user to account with role ('owner' or 'member').
func InsertMember(ctx context.Context, db Execer, account, user, role string) error {
	if _, err := db.Exec(ctx, `INSERT INTO basejump.account_user (user_id, account_id, account_role) VALUES ($1, $2, $3::basejump.account_role)`,
		user, account, role); err != nil {
		return fmt.Errorf("member %s of %s: %w", user, account, err)
	}
	return nil
}

// InsertRole gives user an application role ('user', 'admin',
// 'super_admin').
func InsertRole(ctx context.Context, db Execer, user, role string) error {
	if _, err := db.Exec(ctx, `INSERT INTO public.user_roles (user_id, role) VALUES ($1, $2::public.app_role)`, user, role); err != nil {
		return fmt.Errorf("role of %s: %w", user, err)
	}
	return nil
}

// Sandbox is an active sandbox resource; ExternalID is Daytona's id.
type Sandbox struct {
	ID, Account, ExternalID string
	Config                  string // jsonb; "" for {}
}

// InsertSandbox creates the resource.
func InsertSandbox(ctx context.Context, db Execer, s Sandbox) error {
	config := s.Config
	if config == "" {
		config = "{}"
	}
	if _, err := db.Exec(ctx, `INSERT INTO public.resources (id, account_id, type, external_id, status, config) VALUES ($1, $2, 'sandbox', $3, 'active', $4::jsonb)`,
		s.ID, s.Account, s.ExternalID, config); err != nil {
		return fmt.Errorf("sandbox %s: %w", s.ExternalID, err)
	}
	return nil
}

// Project is a Kortix project. ResourceID links a sandbox resource;
// LegacySandbox sets the id of the legacy projects.sandbox jsonb instead.
type Project struct {
	ID, Account, Name, Description string
	ResourceID, LegacySandbox      string
}

// InsertProject creates the project.
func InsertProject(ctx context.Context, db Execer, p Project) error {
	sandbox := "{}"
	if p.LegacySandbox != "" {
		sandbox = fmt.Sprintf(`{"id": %q, "pass": "x", "vnc_preview": "https://example.invalid"}`, p.LegacySandbox)
	}
	if _, err := db.Exec(ctx, `INSERT INTO public.projects (project_id, name, description, account_id, sandbox_resource_id, sandbox) VALUES ($1, $2, $3, $4, $5::uuid, $6::jsonb)`,
		p.ID, p.Name, nullable(p.Description), p.Account, nullable(p.ResourceID), sandbox); err != nil {
		return fmt.Errorf("project %s: %w", p.ID, err)
	}
	return nil
}

// Thread is a Kortix thread; Account, Project and Parent may be "" (NULL).
type Thread struct {
	ID, Account, Project, Parent, Name string
}

// InsertThread creates the thread.
func InsertThread(ctx context.Context, db Execer, t Thread) error {
	if _, err := db.Exec(ctx, `INSERT INTO public.threads (thread_id, account_id, project_id, parent_thread_id, name) VALUES ($1, $2::uuid, $3::uuid, $4::uuid, $5)`,
		t.ID, nullable(t.Account), nullable(t.Project), nullable(t.Parent), t.Name); err != nil {
		return fmt.Errorf("thread %s: %w", t.ID, err)
	}
	return nil
}

// Message is one message of a conversation: Type "user" or "assistant".
type Message struct{ Type, Text string }

// InsertMessages adds msgs to thread, spread over the last minutes so that
// they read in order.
func InsertMessages(ctx context.Context, db Execer, thread string, msgs []Message) error {
	types, texts := make([]string, len(msgs)), make([]string, len(msgs))
	for i, m := range msgs {
		types[i], texts[i] = m.Type, m.Text
	}
	if _, err := db.Exec(ctx, `INSERT INTO public.messages (thread_id, type, is_llm_message, content, created_at)
		SELECT $1, m.typ, m.typ <> 'user', jsonb_build_object('role', m.typ, 'content', m.txt),
		       now() - make_interval(mins => (cardinality($2::text[]) - m.n)::int)
		  FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS m(typ, txt, n)`, thread, types, texts); err != nil {
		return fmt.Errorf("messages of %s: %w", thread, err)
	}
	return nil
}

// Run is an agent run; ID "" gets a generated id. A run that is not
// 'running' has completed; Error is its error text ("" for none).
type Run struct {
	ID, Thread, Status, Error string
}

// InsertRun creates the agent run.
func InsertRun(ctx context.Context, db Execer, r Run) error {
	if _, err := db.Exec(ctx, `INSERT INTO public.agent_runs (id, thread_id, status, completed_at, error)
		VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3, CASE WHEN $3 <> 'running' THEN now() END, $4)`,
		nullable(r.ID), r.Thread, r.Status, nullable(r.Error)); err != nil {
		return fmt.Errorf("agent run of %s: %w", r.Thread, err)
	}
	return nil
}

// FillThread gives thread the given numbers of generated messages
// (alternately user and assistant), completed agent runs and vector-store
// chunks, each kind in one statement however many: what tests and
// benchmarks need in bulk.
func FillThread(ctx context.Context, db Execer, thread string, messages, runs, docs int) error {
	if messages > 0 {
		if _, err := db.Exec(ctx, `INSERT INTO public.messages (thread_id, type, is_llm_message, content)
			SELECT $1, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END, g % 2 = 1, jsonb_build_object('role', 'user', 'content', 'message ' || g)
			FROM generate_series(1, $2::int) g`, thread, messages); err != nil {
			return fmt.Errorf("messages of %s: %w", thread, err)
		}
	}
	if runs > 0 {
		if _, err := db.Exec(ctx, `INSERT INTO public.agent_runs (thread_id, status) SELECT $1, 'completed' FROM generate_series(1, $2::int)`, thread, runs); err != nil {
			return fmt.Errorf("agent runs of %s: %w", thread, err)
		}
	}
	if docs > 0 {
		if _, err := db.Exec(ctx, `INSERT INTO public.documents (account_id, thread_id, chunk_content, embedding)
			SELECT t.account_id, t.thread_id, 'chunk ' || g, ARRAY[0.1, 0.2, 0.3]::real[]
			FROM public.threads t, generate_series(1, $2::int) g WHERE t.thread_id = $1`, thread, docs); err != nil {
			return fmt.Errorf("documents of %s: %w", thread, err)
		}
	}
	return nil
}

// APIKeyRow is a Kortix API key: Hash is secret_key_hash, the HMAC of the
// secret part (auth.HashSecret); ExpiresAt zero never expires.
type APIKeyRow struct {
	Public, Hash, Account, Title, Status string
	ExpiresAt                            time.Time
}

// InsertAPIKey creates the key.
func InsertAPIKey(ctx context.Context, db Execer, k APIKeyRow) error {
	var expires any
	if !k.ExpiresAt.IsZero() {
		expires = k.ExpiresAt
	}
	if _, err := db.Exec(ctx, `INSERT INTO public.api_keys (public_key, secret_key_hash, account_id, title, status, expires_at)
		VALUES ($1, $2, $3, $4, $5::public.api_key_status, $6)`, k.Public, k.Hash, k.Account, k.Title, k.Status, expires); err != nil {
		return fmt.Errorf("API key %s: %w", k.Public, err)
	}
	return nil
}

// NewUUID returns a random (version 4) UUID in canonical form.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
