package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/shared/postgres"
)

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

// Seeder inserts Kortix rows for tests. Every method fails the test on error.
type Seeder struct {
	TB   testing.TB
	Pool *pgxpool.Pool
}

// Pool opens a pool on url, closed when the test ends.
func Pool(tb testing.TB, url string) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Exec runs sql and fails the test on error.
func (s Seeder) Exec(sql string, args ...any) {
	s.TB.Helper()
	if _, err := s.Pool.Exec(context.Background(), sql, args...); err != nil {
		s.TB.Fatalf("seed: %v\n%s", err, sql)
	}
}

// Count returns the result of a count query.
func (s Seeder) Count(sql string, args ...any) int {
	s.TB.Helper()
	var n int
	if err := s.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		s.TB.Fatalf("count: %v\n%s", err, sql)
	}
	return n
}

// PersonalAccount creates a user's personal account (id = user id) and
// returns the user id.
func (s Seeder) PersonalAccount() string {
	s.TB.Helper()
	id := NewUUID()
	s.Exec(`INSERT INTO basejump.accounts (id, primary_owner_user_id, name, slug, personal_account) VALUES ($1::uuid, $1::uuid, 'personal', $1::text, true)`, id)
	s.Exec(`INSERT INTO basejump.account_user (user_id, account_id, account_role) VALUES ($1, $1, 'owner')`, id)
	return id
}

// TeamAccount creates a team account owned by owner and returns its id.
func (s Seeder) TeamAccount(owner string) string {
	s.TB.Helper()
	id := NewUUID()
	s.Exec(`INSERT INTO basejump.accounts (id, primary_owner_user_id, name, slug, personal_account) VALUES ($1::uuid, $2, 'team', $1::text, false)`, id, owner)
	s.Exec(`INSERT INTO basejump.account_user (user_id, account_id, account_role) VALUES ($1, $2, 'owner')`, owner, id)
	return id
}

// Member adds user to account with the given role ('owner' or 'member').
func (s Seeder) Member(account, user, role string) {
	s.TB.Helper()
	s.Exec(`INSERT INTO basejump.account_user (user_id, account_id, account_role) VALUES ($1, $2, $3::basejump.account_role)`, user, account, role)
}

// Role gives user an application role ('user', 'admin', 'super_admin').
func (s Seeder) Role(user, role string) {
	s.TB.Helper()
	s.Exec(`INSERT INTO public.user_roles (user_id, role) VALUES ($1, $2::public.app_role)`, user, role)
}

// Sandbox creates an active sandbox resource and returns its id.
func (s Seeder) Sandbox(account, externalID string) string {
	s.TB.Helper()
	id := NewUUID()
	s.Exec(`INSERT INTO public.resources (id, account_id, type, external_id, status, config) VALUES ($1, $2, 'sandbox', $3, 'active', '{}')`, id, account, externalID)
	return id
}

// Project creates a project; resourceID ("" for none) links a sandbox
// resource, legacySandbox ("" for none) sets the legacy sandbox jsonb id.
func (s Seeder) Project(account, resourceID, legacySandbox string) string {
	s.TB.Helper()
	id := NewUUID()
	var res any
	if resourceID != "" {
		res = resourceID
	}
	sandbox := "{}"
	if legacySandbox != "" {
		sandbox = fmt.Sprintf(`{"id": %q, "pass": "x", "vnc_preview": "https://example.invalid"}`, legacySandbox)
	}
	s.Exec(`INSERT INTO public.projects (project_id, name, account_id, sandbox_resource_id, sandbox) VALUES ($1, 'project', $2, $3::uuid, $4::jsonb)`, id, account, res, sandbox)
	return id
}

// Thread creates a thread with a random id. project and parent may be ""
// (NULL).
func (s Seeder) Thread(account, project, parent string) string {
	s.TB.Helper()
	return s.ThreadWithID(NewUUID(), account, project, parent)
}

// ThreadWithID creates a thread with the given id, for tests whose input is
// derived from the id and needs characters a random UUID may lack (a letter
// to swap for a look-alike, letters to change the case of).
func (s Seeder) ThreadWithID(id, account, project, parent string) string {
	s.TB.Helper()
	s.Exec(`INSERT INTO public.threads (thread_id, account_id, project_id, parent_thread_id, name) VALUES ($1, $2::uuid, $3::uuid, $4::uuid, 'thread')`,
		id, nullable(account), nullable(project), nullable(parent))
	return id
}

// Content gives thread n messages, runs agent runs and docs documents.
func (s Seeder) Content(thread string, messages, runs, docs int) {
	s.TB.Helper()
	if messages > 0 {
		s.Exec(`INSERT INTO public.messages (thread_id, type, is_llm_message, content)
			SELECT $1, CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END, g % 2 = 1, jsonb_build_object('role', 'user', 'content', 'message ' || g)
			FROM generate_series(1, $2::int) g`, thread, messages)
	}
	if runs > 0 {
		s.Exec(`INSERT INTO public.agent_runs (thread_id, status) SELECT $1, 'completed' FROM generate_series(1, $2::int)`, thread, runs)
	}
	if docs > 0 {
		s.Exec(`INSERT INTO public.documents (account_id, thread_id, chunk_content, embedding)
			SELECT t.account_id, t.thread_id, 'chunk ' || g, ARRAY[0.1, 0.2, 0.3]::real[]
			FROM public.threads t, generate_series(1, $2::int) g WHERE t.thread_id = $1`, thread, docs)
	}
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Snapshot counts the rows of every table a delete may touch (and a few
// columns it may write), to prove that a rejected request changed nothing.
func (s Seeder) Snapshot() map[string]int {
	s.TB.Helper()
	out := map[string]int{}
	for _, table := range []string{"public.threads", "public.messages", "public.agent_runs", "public.documents",
		"public.projects", "public.resources", "thread_delete.outbox", "basejump.accounts", "public.api_keys"} {
		out[table] = s.Count(`SELECT count(*) FROM ` + table)
	}
	out["api_keys_used"] = s.Count(`SELECT count(*) FROM public.api_keys WHERE last_used_at IS NOT NULL`)
	out["resources_active"] = s.Count(`SELECT count(*) FROM public.resources WHERE status = 'active'`)
	out["message_counters"] = s.Count(`SELECT coalesce(sum(total_message_count), 0) FROM public.threads`)
	return out
}

// WaitServiceIdle waits until no backend of the service's pools (those of
// ServicePool: application_name thread-delete) is running a statement or
// holding a transaction open in the seeder's database. A statement its
// caller abandoned has then committed or rolled back: what it changed, or
// did not, is final and can be asserted.
func (s Seeder) WaitServiceIdle() {
	s.TB.Helper()
	WaitFor(s.TB, 10*time.Second, "the service's database sessions to go idle", func() bool {
		return s.Count(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = 'thread-delete' AND state <> 'idle'`) == 0
	})
}

// APIKey creates an API key for account the way Kortix does and returns the
// "pk_...:sk_..." credential. hash computes secret_key_hash from the secret.
func (s Seeder) APIKey(account, status string, expiresIn time.Duration, hash func(secret string) string) string {
	s.TB.Helper()
	pk, sk := "pk_"+alnum32(), "sk_"+alnum32()
	var expires any
	if expiresIn != 0 {
		expires = time.Now().Add(expiresIn)
	}
	s.Exec(`INSERT INTO public.api_keys (public_key, secret_key_hash, account_id, title, status, expires_at)
		VALUES ($1, $2, $3, 'test key', $4::public.api_key_status, $5)`, pk, hash(sk), account, status, expires)
	return pk + ":" + sk
}

func alnum32() string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b[:])
}

// ServicePool opens a pool on url with the service's own settings
// (postgres.NewPool: exec mode, no ping on acquire), closed when the test
// ends. Use it for the code under test; Pool is for seeding and assertions.
func ServicePool(tb testing.TB, url string, maxConns int32) *pgxpool.Pool {
	tb.Helper()
	pool, err := postgres.NewPool(context.Background(), postgres.PoolOptions{URL: url, MaxConns: maxConns})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// Run creates an agent run of thread with status ('running', 'completed',
// ...) and returns its id.
func (s Seeder) Run(thread, status string) string {
	s.TB.Helper()
	id := NewUUID()
	s.Exec(`INSERT INTO public.agent_runs (id, thread_id, status) VALUES ($1, $2, $3)`, id, thread, status)
	return id
}

// Session signs user in (a Supabase Auth session, creating the auth.users
// row when missing) and returns the session id; notAfter, when non-zero,
// ends the session then.
func (s Seeder) Session(user string, notAfter time.Time) string {
	s.TB.Helper()
	id := NewUUID()
	var end any
	if !notAfter.IsZero() {
		end = notAfter
	}
	s.Exec(`INSERT INTO auth.users (id) VALUES ($1) ON CONFLICT DO NOTHING`, user)
	s.Exec(`INSERT INTO auth.sessions (id, user_id, created_at, aal, not_after) VALUES ($1, $2, now(), 'aal1', $3)`, id, user, end)
	return id
}
