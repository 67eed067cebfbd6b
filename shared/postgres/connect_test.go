package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack/testenv"
	"github.com/kortix-ai/thread-delete/shared/config"
	"github.com/kortix-ai/thread-delete/shared/postgres"
)

// TestOpenWithIAMAuth connects the way DB_IAM_AUTH=true does: TLS required,
// and a fresh RDS auth token (signed offline from the environment's
// credentials) as the password of every new connection. The local server
// trusts loopback, so what this proves is the wiring: the token is built
// and the connection is made over TLS (the local server must have ssl on,
// as Debian's has).
func TestOpenWithIAMAuth(t *testing.T) {
	url := testenv.Database(t)
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
	t.Setenv("AWS_SESSION_TOKEN", "")
	pool, err := postgres.Open(context.Background(), config.DB{
		IAMAuth: true, Host: cfg.Host, Port: int(cfg.Port), Name: cfg.Database, User: cfg.User, Region: "eu-west-1",
	}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var ssl bool
	if err := pool.QueryRow(context.Background(), `SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil {
		t.Fatalf("IAM-auth connection: %v", err)
	}
	if !ssl {
		t.Fatal("IAM-auth connection is not encrypted")
	}
	c, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	if pw := c.Conn().Config().Password; len(pw) < 100 || !containsAll(pw, "X-Amz-Algorithm=AWS4-HMAC-SHA256", "Action=connect", "DBUser="+cfg.User, "eu-west-1") {
		t.Fatalf("password is not an RDS auth token: %.80q", pw)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
