package testenv

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kortix-ai/thread-delete/internal/localstack"
	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// NewUUID returns a random (version 4) UUID in canonical form.
func NewUUID() string { return localstack.NewUUID() }

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

// check fails the test when a writer of the local stack failed.
func (s Seeder) check(err error) {
	s.TB.Helper()
	if err != nil {
		s.TB.Fatalf("seed: %v", err)
	}
}

// PersonalAccount creates a user's personal account (id = user id) and
// returns the user id.
func (s Seeder) PersonalAccount() string {
	s.TB.Helper()
	id := NewUUID()
	s.check(localstack.InsertAccount(context.Background(), s.Pool, localstack.Account{ID: id, Owner: id, Name: "personal", Slug: id, Personal: true}))
	return id
}

// TeamAccount creates a team account owned by owner and returns its id.
func (s Seeder) TeamAccount(owner string) string {
	s.TB.Helper()
	id := NewUUID()
	s.check(localstack.InsertAccount(context.Background(), s.Pool, localstack.Account{ID: id, Owner: owner, Name: "team", Slug: id}))
	return id
}

// Member adds user to account with the given role ('owner' or 'member').
func (s Seeder) Member(account, user, role string) {
	s.TB.Helper()
	s.check(localstack.InsertMember(context.Background(), s.Pool, account, user, role))
}

// Role gives user an application role ('user', 'admin', 'super_admin').
func (s Seeder) Role(user, role string) {
	s.TB.Helper()
	s.check(localstack.InsertRole(context.Background(), s.Pool, user, role))
}

// Sandbox creates an active sandbox resource and returns its id.
func (s Seeder) Sandbox(account, externalID string) string {
	s.TB.Helper()
	id := NewUUID()
	s.check(localstack.InsertSandbox(context.Background(), s.Pool, localstack.Sandbox{ID: id, Account: account, ExternalID: externalID}))
	return id
}

// Project creates a project; resourceID ("" for none) links a sandbox
// resource, legacySandbox ("" for none) sets the legacy sandbox jsonb id.
func (s Seeder) Project(account, resourceID, legacySandbox string) string {
	s.TB.Helper()
	id := NewUUID()
	s.check(localstack.InsertProject(context.Background(), s.Pool, localstack.Project{
		ID: id, Account: account, Name: "project", ResourceID: resourceID, LegacySandbox: legacySandbox,
	}))
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
	s.check(localstack.InsertThread(context.Background(), s.Pool, localstack.Thread{
		ID: id, Account: account, Project: project, Parent: parent, Name: "thread",
	}))
	return id
}

// Content gives thread n messages, runs agent runs and docs documents.
func (s Seeder) Content(thread string, messages, runs, docs int) {
	s.TB.Helper()
	s.check(localstack.FillThread(context.Background(), s.Pool, thread, messages, runs, docs))
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
	k := localstack.APIKeyRow{Public: pk, Hash: hash(sk), Account: account, Title: "test key", Status: status}
	if expiresIn != 0 {
		k.ExpiresAt = time.Now().Add(expiresIn)
	}
	s.check(localstack.InsertAPIKey(context.Background(), s.Pool, k))
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
	s.check(localstack.InsertRun(context.Background(), s.Pool, localstack.Run{ID: id, Thread: thread, Status: status}))
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
