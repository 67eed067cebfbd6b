//go:build linux

package postgres

import (
	"net"

	"golang.org/x/sys/unix"
)

// tcpEstablished is Linux's TCP_ESTABLISHED state (include/net/tcp_states.h).
const tcpEstablished = 1

// peerClosed reports whether the peer of an idle connection has closed or
// reset it: the kernel's TCP state has left ESTABLISHED (CLOSE_WAIT after
// a FIN, CLOSE after a reset). One getsockopt call: no byte is sent or
// consumed, and bytes waiting unread (a TLS record) do not count.
func peerClosed(c *net.TCPConn) bool {
	if c == nil {
		return false
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	raw.Control(func(fd uintptr) { //nolint:errcheck // the callback records the outcome
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err == nil && info.State != tcpEstablished
	})
	return closed
}
