// Package faultproxy is a small in-process TCP proxy that injects network
// faults between two endpoints, for tests: it listens on 127.0.0.1, forwards
// every connection to one target, and can cut connections, stall them like a
// network partition (a blackhole), add latency, cut a connection after a
// number of bytes, lose the answer to a request it recognises, or cut such
// a request part way.
//
// Directions are named from the client's point of view: "up" is client to
// target (requests), "down" is target to client (answers, streams).
package faultproxy

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Mode is what the proxy does with traffic.
type Mode int

// The proxy's modes.
const (
	// Pass forwards traffic (after any latency).
	Pass Mode = iota
	// Cutting closes every connection and closes new ones as soon as they
	// are accepted: the peer sees a reset or end of file at once.
	Cutting
	// Blackholing keeps every connection open but forwards nothing, and
	// holds new connections without connecting them to the target, as a
	// network partition does. Heal resumes forwarding where it stopped,
	// as TCP does once a partition heals.
	Blackholing
	// BlackholingAnswers stalls only what the target sends (a one-way
	// partition): requests still arrive, answers do not.
	BlackholingAnswers
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case Cutting:
		return "cut"
	case Blackholing:
		return "blackhole"
	case BlackholingAnswers:
		return "blackhole-answers"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// chunkSize is the most one read of either direction takes.
const chunkSize = 32 << 10

// queueLen is how many chunks one direction holds between reading and
// forwarding (what the latency and a blackhole keep in flight).
const queueLen = 16

// Proxy forwards TCP connections to a target address with faults injected.
// All its methods may be called concurrently.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced whenever the mode changes
	mode     Mode
	latency  time.Duration
	cutAfter int64      // down bytes per connection before a cut; <0 none
	triggers []*trigger // armed request patterns
	links    map[*link]struct{}
	stats    Stats
	closed   bool
	wg       sync.WaitGroup
}

// Stats counts what the proxy did.
type Stats struct {
	Accepted    int // connections accepted from clients
	Cuts        int // connections closed by a fault (mode, byte budget or trigger)
	LostAnswers int // connections cut before the answer to an armed request
	Truncated   int // connections cut part way through an armed request
}

// trigger is an armed request pattern: the next count connections that
// send pattern lose their answer (upBytes < 0) or are cut after upBytes
// bytes from the read that carried it.
type trigger struct {
	pattern []byte
	count   int
	upBytes int64
}

// New starts a proxy on 127.0.0.1 (a free port) forwarding to target
// ("host:port"). Close stops it.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, changed: make(chan struct{}), cutAfter: -1, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the proxy's listening address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is "http://" followed by Addr.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Stats returns the counters so far.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Cut closes every connection and closes new ones as soon as they arrive,
// until Heal.
func (p *Proxy) Cut() { p.setMode(Cutting) }

// Blackhole stalls every connection and holds new ones without forwarding
// anything, until Heal.
func (p *Proxy) Blackhole() { p.setMode(Blackholing) }

// BlackholeAnswers stalls what the target sends while requests still
// reach it, until Heal.
func (p *Proxy) BlackholeAnswers() { p.setMode(BlackholingAnswers) }

// Heal forwards traffic again; stalled connections resume.
func (p *Proxy) Heal() { p.setMode(Pass) }

// Mode returns the current mode.
func (p *Proxy) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

func (p *Proxy) setMode(m Mode) {
	p.mu.Lock()
	p.mode = m
	p.notifyLocked()
	var cut []*link
	if m == Cutting {
		cut = p.linksLocked()
	}
	p.mu.Unlock()
	for _, l := range cut {
		l.cut()
	}
}

// DropConnections closes every open connection without changing the mode
// (a reset of established connections; new ones are accepted as usual).
func (p *Proxy) DropConnections() {
	p.mu.Lock()
	cut := p.linksLocked()
	p.mu.Unlock()
	for _, l := range cut {
		l.cut()
	}
}

// SetLatency delays every chunk by d in each direction (0 for none). It
// applies to data read from now on; it is latency, not a bandwidth limit.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// CutAfterBytes cuts every connection once it has forwarded n bytes from
// the target to the client, counted from its start, or from this call for
// connections already open; the n-th byte is delivered, the next is not.
// A negative n disarms it.
func (p *Proxy) CutAfterBytes(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAfter = n
	for l := range p.links {
		l.setBudget(n)
	}
}

// LoseAnswers arms the next count connections that forward pattern from
// the client to the target (e.g. []byte("POST /tx?")): such a connection
// forwards the rest of what the client sends but is cut before the first
// byte of the target's answer reaches the client. count <= 0 disarms it.
func (p *Proxy) LoseAnswers(pattern []byte, count int) { p.arm(pattern, count, -1) }

// TruncateRequests arms the next count connections that forward pattern
// from the client: such a connection forwards n bytes from the read that
// carried the pattern (its start included) and is then cut, so the target
// gets part of the request. count <= 0 disarms it.
func (p *Proxy) TruncateRequests(pattern []byte, n int64, count int) {
	p.arm(pattern, count, max(n, 0))
}

// arm replaces the trigger of the same kind (answer or truncation).
func (p *Proxy) arm(pattern []byte, count int, upBytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.triggers[:0]
	for _, tr := range p.triggers {
		if (tr.upBytes < 0) != (upBytes < 0) {
			kept = append(kept, tr)
		}
	}
	p.triggers = kept
	if count > 0 && len(pattern) > 0 {
		p.triggers = append(p.triggers, &trigger{pattern: append([]byte(nil), pattern...), count: count, upBytes: upBytes})
	}
}

// Close stops listening and closes every connection.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.notifyLocked()
	links := p.linksLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	for _, l := range links {
		l.close()
	}
	p.wg.Wait()
	return err
}

// notifyLocked wakes everyone waiting for a mode change.
func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Proxy) linksLocked() []*link {
	out := make([]*link, 0, len(p.links))
	for l := range p.links {
		out = append(out, l)
	}
	return out
}

// gate blocks while the proxy blackholes the direction (up: client to
// target) and reports whether traffic may flow (false when cutting,
// closed, or done is closed).
func (p *Proxy) gate(up bool, done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		mode, closed, changed := p.mode, p.closed, p.changed
		p.mu.Unlock()
		switch {
		case closed || mode == Cutting:
			return false
		case mode == Pass, mode == BlackholingAnswers && up:
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.stats.Accepted++
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}
