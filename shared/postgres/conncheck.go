package postgres

import (
	"context"
	"crypto/tls"
	"net"

	"github.com/jackc/pgx/v5"
)

// The pool does not ping connections before use (a round trip per request:
// between Lambda invokes every connection has been idle), and a request is
// never re-sent after a failure the server may have seen: a failure after
// the first byte left might be a commit whose reply was lost, and sending a
// delete again would answer 404 for a thread that this very request
// deleted. Instead, a connection is checked for free as the pool hands it
// out: when its peer has closed it while the Lambda environment was frozen
// (an idle timeout of the server or of a proxy, a failover), the kernel
// knows already, and the pool opens a fresh connection instead.

// usable is the pool's PrepareConn hook: false discards the connection.
func usable(_ context.Context, c *pgx.Conn) (bool, error) {
	return !peerClosed(tcpOf(c.PgConn().Conn())), nil
}

// tcpOf returns the TCP connection under c (under TLS too), or nil for
// other transports (a Unix socket is never closed behind our back).
func tcpOf(c net.Conn) *net.TCPConn {
	if t, ok := c.(*tls.Conn); ok {
		c = t.NetConn()
	}
	tcp, _ := c.(*net.TCPConn)
	return tcp
}
