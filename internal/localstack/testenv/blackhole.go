package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Blackhole is a loopback TCP proxy that can be switched into a black hole:
// while swallowing, it keeps every connection open and accepts new ones, but
// drops whatever the client sends and answers nothing. That is what a
// database or endpoint that vanished without closing its connections looks
// like (a failover, a dropped route, a security group change): unlike a
// refused or reset connection, nothing tells the client to give up, so only
// its own timeouts can.
//
// Unlike Proxy's SetDelay, swallowed bytes are never delivered later, so a
// request that was answered with an error cannot take effect afterwards.
type Blackhole struct {
	Addr   string // host:port clients should dial
	target string // "" forwards nowhere: every connection is swallowed
	ln     net.Listener

	swallow  atomic.Bool
	accepted atomic.Int64
	dropped  atomic.Int64 // bytes swallowed, either direction

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// StartBlackhole listens on a loopback port and forwards to target until
// Swallow(true). With target "" it swallows from the start. It stops when
// the test ends.
func StartBlackhole(tb testing.TB, target string) *Blackhole {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b := &Blackhole{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	if target == "" {
		b.swallow.Store(true)
	}
	go b.serve()
	tb.Cleanup(b.Close)
	return b
}

// Swallow turns the black hole on or off. It applies at once to open
// connections (in both directions) and to new ones.
func (b *Blackhole) Swallow(on bool) { b.swallow.Store(on) }

// Accepted returns how many connections clients opened so far.
func (b *Blackhole) Accepted() int64 { return b.accepted.Load() }

// Dropped returns how many bytes were swallowed so far.
func (b *Blackhole) Dropped() int64 { return b.dropped.Load() }

// Close stops listening and closes every connection.
func (b *Blackhole) Close() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}

func (b *Blackhole) track(c net.Conn) func() {
	b.mu.Lock()
	b.conns[c] = struct{}{}
	b.mu.Unlock()
	return func() {
		c.Close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	}
}

func (b *Blackhole) serve() {
	for {
		client, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		go b.handle(client)
	}
}

func (b *Blackhole) handle(client net.Conn) {
	defer b.track(client)()
	if b.swallow.Load() {
		// Never reaches the target: read and drop until the client leaves.
		b.drain(client, nil)
		return
	}
	server, err := net.DialTimeout("tcp", b.target, 2*time.Second)
	if err != nil {
		return
	}
	defer b.track(server)()
	done := make(chan struct{}, 2)
	go func() { b.drain(client, server); server.Close(); done <- struct{}{} }()
	go func() { b.drain(server, client); client.Close(); done <- struct{}{} }()
	<-done
	<-done
}

// drain copies from src to dst (nil: nowhere) while not swallowing, and
// drops what it reads while swallowing.
func (b *Blackhole) drain(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if dst == nil || b.swallow.Load() {
				b.dropped.Add(int64(n))
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
