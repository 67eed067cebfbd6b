package testenv

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy that counts round trips and can add latency
// or inject faults. A round trip is one flight of client bytes sent after the
// server last spoke (or at the start): a pipelined batch of queries is one
// flight however many packets it takes.
type Proxy struct {
	Addr   string // host:port clients should dial
	target string
	ln     net.Listener

	flights atomic.Int64
	delay   atomic.Int64 // added before each client flight, in nanoseconds
	held    atomic.Int64 // flights being held back by delay right now
	refuse  atomic.Bool  // close new connections at once
	cutNext atomic.Int64 // close the connection on the next client flight when > 0
	// dropReply, when 1, makes the next client flight reach the server but
	// its reply never reach the client: the connection is closed as the
	// server starts answering.
	dropReply atomic.Int64
	// replyDelay is added before each chunk the server sends back (each
	// read from the server), in nanoseconds.
	replyDelay atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// StartProxy listens on a loopback port and forwards to target. It stops
// when the test ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go p.serve()
	tb.Cleanup(p.Close)
	return p
}

// RoundTrips returns how many client flights passed so far.
func (p *Proxy) RoundTrips() int64 { return p.flights.Load() }

// SetDelay adds d of latency to every round trip from now on.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

// SetReplyDelay adds d of latency to every chunk the server sends back
// (each read from its side of the connection) from now on. A reply that
// arrives in one chunk, as PostgreSQL's answer to a pipelined batch does
// (it is flushed at the Sync), costs d once; a reply the server flushes in
// parts costs d per part, as it would on a slow link.
func (p *Proxy) SetReplyDelay(d time.Duration) { p.replyDelay.Store(int64(d)) }

// Held returns how many client flights the delay is holding back right now.
// Once it is 0, every delayed flight has been handed to the server (or
// dropped with its connection): nothing sent earlier can still arrive late.
func (p *Proxy) Held() int64 { return p.held.Load() }

// Refuse makes the proxy drop new connections (and, with CutAll, existing
// ones): the service behind it looks unreachable.
func (p *Proxy) Refuse(on bool) { p.refuse.Store(on) }

// CutOnNextFlight closes a connection the moment the client sends its next
// flight, before forwarding it: a connection lost mid-request.
func (p *Proxy) CutOnNextFlight() { p.cutNext.Store(1) }

// DropNextReply forwards the next client flight to the server and closes
// the connection when the server's answer comes, without passing it on: a
// reply lost on the way back. PostgreSQL answers a pipelined batch after its
// Sync, once the implicit transaction has committed, so for a delete this is
// "the commit happened and the client never heard".
func (p *Proxy) DropNextReply() { p.dropReply.Store(1) }

// CutAll closes every open connection.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.ln.Close()
	p.CutAll()
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.refuse.Load() {
			client.Close()
			continue
		}
		go p.handle(client)
	}
}

func (p *Proxy) handle(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		client.Close()
		server.Close()
		p.track(client, false)
		p.track(server, false)
	}()
	var serverSpoke, dropping atomic.Bool
	serverSpoke.Store(true) // the first client bytes start a flight
	done := make(chan struct{}, 2)
	go func() { // server -> client
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 && dropping.Load() {
				break // the reply is lost: the client sees the connection close
			}
			if n > 0 {
				if d := time.Duration(p.replyDelay.Load()); d > 0 {
					time.Sleep(d)
				}
				serverSpoke.Store(true)
				if _, werr := client.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		client.Close()
		done <- struct{}{}
	}()
	go func() { // client -> server
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				held := false
				if serverSpoke.Swap(false) {
					if p.cutNext.CompareAndSwap(1, 0) {
						break
					}
					p.flights.Add(1)
					if p.dropReply.CompareAndSwap(1, 0) {
						dropping.Store(true)
					}
					if d := time.Duration(p.delay.Load()); d > 0 {
						held = true
						p.held.Add(1)
						time.Sleep(d)
					}
				}
				_, werr := server.Write(buf[:n])
				if held {
					p.held.Add(-1)
				}
				if werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		server.Close()
		done <- struct{}{}
	}()
	<-done
	<-done
}
