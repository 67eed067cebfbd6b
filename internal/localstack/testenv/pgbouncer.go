package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kortix-ai/thread-delete/internal/localstack"
)

// StartPgBouncer starts a throwaway PgBouncer (Debian's package, which
// `make services` installs) on a free loopback port in front of the test
// PostgreSQL server, and returns its host:port; use ViaAddr to point a
// database URL at it. It is stopped when the test ends.
//
// It is set up like the transaction poolers the service meets in
// production (Supabase's on port 6543, RDS Proxy): pool_mode = transaction,
// so consecutive transactions of one client may run on different server
// connections; at most poolSize server connections per database and user,
// shared by every client; and no startup parameter tolerated beyond the
// ones PgBouncer tracks itself, except extra_float_digits (which those
// poolers ignore too). Clients are trusted; PgBouncer logs in to PostgreSQL
// with the test server's credentials.
func StartPgBouncer(tb testing.TB, poolSize int) string {
	tb.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer" // Debian's place, outside a non-root PATH
		if _, statErr := os.Stat(bin); statErr != nil {
			tb.Fatalf("testenv: pgbouncer is not installed (`make services` installs it: apt-get install pgbouncer): %v", err)
		}
	}
	server, err := pgx.ParseConfig(adminURL())
	if err != nil {
		tb.Fatal(err)
	}

	dir := tb.TempDir()
	users := filepath.Join(dir, "users.txt")
	writeFile(tb, users, fmt.Sprintf("%s %s\n", authFileQuote(server.User), authFileQuote(server.Password)))
	port := FreePort(tb)
	ini := filepath.Join(dir, "pgbouncer.ini")
	writeFile(tb, ini, fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
reserve_pool_size = 0
ignore_startup_parameters = extra_float_digits
`, server.Host, server.Port, port, users, max(poolSize, 1)))

	// PgBouncer refuses to run as root: as root, it is told to become
	// postgres once it has read its files.
	args := []string{ini}
	if os.Geteuid() == 0 {
		args = []string{"-u", "postgres", ini}
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		tb.Fatalf("testenv: pgbouncer: %v", err)
	}
	log := &localstack.Buffer{}
	up := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		// Read the log to its end: PgBouncer blocks once the pipe is full.
		sc := bufio.NewScanner(stderr)
		for signalled := false; sc.Scan(); {
			fmt.Fprintln(log, sc.Text())
			if !signalled && strings.Contains(sc.Text(), "process up:") {
				close(up)
				signalled = true
			}
		}
		cmd.Wait() //nolint:errcheck
		close(exited)
	}()
	tb.Cleanup(func() {
		cmd.Process.Kill() //nolint:errcheck
		<-exited
		if tb.Failed() {
			tb.Logf("pgbouncer log:\n%s", log.String())
		}
	})
	select {
	case <-up: // it logs this line once it listens
	case <-exited:
		tb.Fatalf("testenv: pgbouncer exited at start:\n%s", log.String())
	case <-time.After(10 * time.Second):
		tb.Fatalf("testenv: pgbouncer did not come up:\n%s", log.String())
	}
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
}

// authFileQuote quotes s as PgBouncer's auth_file wants it.
func authFileQuote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func writeFile(tb testing.TB, name, content string) {
	tb.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
}
