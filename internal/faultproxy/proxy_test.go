package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// echoServer echoes every connection and records all it received.
type echoServer struct {
	ln   net.Listener
	mu   sync.Mutex
	got  bytes.Buffer
	wg   sync.WaitGroup
	done chan struct{}
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, done: make(chan struct{})}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				go func() { <-e.done; c.Close() }()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					e.mu.Lock()
					e.got.Write(buf[:n])
					e.mu.Unlock()
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { close(e.done); ln.Close(); e.wg.Wait() })
	return e
}

func (e *echoServer) received() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got.String()
}

// waitReceived waits up to a second for the target to have received want.
func waitReceived(t *testing.T, e *echoServer, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for e.received() != want {
		if time.Now().After(deadline) {
			t.Fatalf("target received %q, want %q", e.received(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dial connects to the proxy and closes the connection at the end.
func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads len(msg) bytes back within limit.
func roundTrip(c net.Conn, msg string, limit time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(limit))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, len(msg))
	n, err := io.ReadFull(c, buf)
	return string(buf[:n]), err
}

// requireEcho checks that msg comes back on c.
func requireEcho(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if got, err := roundTrip(c, msg, 2*time.Second); err != nil || got != msg {
		t.Fatalf("round trip of %q: got %q, %v", msg, got, err)
	}
}

// requireClosed checks that c reads end of file or a reset within a
// second, after receiving exactly want.
func requireClosed(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	data, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %q, want it closed", data)
	}
	if string(data) != want {
		t.Fatalf("received %q before the close, want %q", data, want)
	}
}

// requireClosedAfterPrefix is requireClosed for a peer that may have
// received any prefix of want before the close.
func requireClosedAfterPrefix(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	data, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open after %q, want it closed", data)
	}
	if !strings.HasPrefix(want, string(data)) {
		t.Fatalf("received %q before the close, want a prefix of %q", data, want)
	}
}

// requireStalled checks that nothing arrives on c for 300 ms.
func requireStalled(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if got, err := roundTrip(c, msg, 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) || got != "" {
		t.Fatalf("through a blackhole: got %q, %v; want nothing and a timeout", got, err)
	}
}

func TestProxy(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, p *Proxy, e *echoServer)
	}{
		{"PassForwardsBothWays", proxyPassForwardsBothWays},
		{"LatencyDelaysEachDirection", proxyLatencyDelaysEachDirection},
		{"CutClosesOpenAndNewConnectionsUntilHeal", proxyCutClosesOpenAndNewConnectionsUntilHeal},
		{"BlackholeStallsUntilHealThenResumes", proxyBlackholeStallsUntilHealThenResumes},
		{"BlackholeAnswersLetsRequestsThrough", proxyBlackholeAnswersLetsRequestsThrough},
		{"CutAfterBytesDeliversExactlyNBytes", proxyCutAfterBytesDeliversExactlyNBytes},
		{"LoseAnswersForwardsTheRequestAndCutsBeforeTheAnswer", proxyLoseAnswersForwardsTheRequestAndCutsBeforeTheAnswer},
		{"TruncateRequestsForwardsOnlyNBytesOfTheRequest", proxyTruncateRequestsForwardsOnlyNBytesOfTheRequest},
		{"DropConnectionsKeepsAcceptingNewOnes", proxyDropConnectionsKeepsAcceptingNewOnes},
		{"CloseEndsEverything", proxyCloseEndsEverything},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := startEcho(t)
			p, err := New(e.ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { p.Close() })
			tc.run(t, p, e)
		})
	}
}

// TestProxyMatchesAPatternSplitAcrossReads checks that a request split
// over two writes still arms the lost answer.
func TestProxyMatchesAPatternSplitAcrossReads(t *testing.T) {
	e := startEcho(t)
	p, err := New(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	p.SetLatency(20 * time.Millisecond)
	p.LoseAnswers([]byte("POST /tx"), 1)
	c := dial(t, p)
	l := &link{p: p, upBudget: -1}
	l.matchTriggers([]byte("xxPOS"))
	l.matchTriggers([]byte("T /tx?"))
	if !l.loseAnswer {
		t.Fatal("a pattern split over two reads was not matched")
	}
	requireEcho(t, c, "unarmed now")
}

func proxyPassForwardsBothWays(t *testing.T, p *Proxy, e *echoServer) {
	requireEcho(t, dial(t, p), "hello")
	if got := e.received(); got != "hello" {
		t.Fatalf("target received %q", got)
	}
}

func proxyLatencyDelaysEachDirection(t *testing.T, p *Proxy, e *echoServer) {
	p.SetLatency(100 * time.Millisecond)
	c := dial(t, p)
	start := time.Now()
	requireEcho(t, c, "slow")
	if took := time.Since(start); took < 200*time.Millisecond || took > time.Second {
		t.Fatalf("round trip took %s, want 200ms (2 x 100ms) to 1s", took)
	}
	p.SetLatency(0)
	start = time.Now()
	requireEcho(t, c, "fast")
	if took := time.Since(start); took >= 200*time.Millisecond {
		t.Fatalf("round trip without latency took %s, as long as with it", took)
	}
}

func proxyCutClosesOpenAndNewConnectionsUntilHeal(t *testing.T, p *Proxy, e *echoServer) {
	c := dial(t, p)
	requireEcho(t, c, "before")
	p.Cut()
	requireClosed(t, c, "")
	requireClosed(t, dial(t, p), "")
	p.Heal()
	requireEcho(t, dial(t, p), "after")
	if s := p.Stats(); s.Cuts != 2 {
		t.Fatalf("stats %+v, want 2 cuts", s)
	}
}

func proxyBlackholeStallsUntilHealThenResumes(t *testing.T, p *Proxy, e *echoServer) {
	c := dial(t, p)
	requireEcho(t, c, "before")
	p.Blackhole()
	requireStalled(t, c, "held")
	fresh := dial(t, p)
	requireStalled(t, fresh, "new")
	if got := e.received(); got != "before" {
		t.Fatalf("target received %q through a blackhole", got)
	}
	p.Heal()
	for _, tc := range []struct {
		c    net.Conn
		want string
	}{{c, "held"}, {fresh, "new"}} {
		_ = tc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, len(tc.want))
		if _, err := io.ReadFull(tc.c, buf); err != nil || string(buf) != tc.want {
			t.Fatalf("after Heal: got %q, %v; want %q", buf, err, tc.want)
		}
	}
}

func proxyCutAfterBytesDeliversExactlyNBytes(t *testing.T, p *Proxy, e *echoServer) {
	p.CutAfterBytes(10)
	c := dial(t, p)
	if _, err := c.Write([]byte("0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, c, "0123456789")
	p.CutAfterBytes(-1)
	requireEcho(t, dial(t, p), "0123456789abcdef")
}

func proxyLoseAnswersForwardsTheRequestAndCutsBeforeTheAnswer(t *testing.T, p *Proxy, e *echoServer) {
	p.LoseAnswers([]byte("POST /tx"), 1)
	plain := dial(t, p)
	requireEcho(t, plain, "GET /stream\n")
	c := dial(t, p)
	if _, err := c.Write([]byte("POST /tx?name=a\n")); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, c, "")
	waitReceived(t, e, "GET /stream\nPOST /tx?name=a\n")
	requireEcho(t, plain, "still open")
	requireEcho(t, dial(t, p), "POST /tx?name=b\n") // only one armed
	if s := p.Stats(); s.LostAnswers != 1 || s.Cuts != 1 {
		t.Fatalf("stats %+v, want 1 lost answer and 1 cut", s)
	}
}

func proxyTruncateRequestsForwardsOnlyNBytesOfTheRequest(t *testing.T, p *Proxy, e *echoServer) {
	p.TruncateRequests([]byte("POST /tx"), 12, 1)
	plain := dial(t, p)
	requireEcho(t, plain, "GET /stream\n")
	c := dial(t, p)
	if _, err := c.Write([]byte("POST /tx?name=a body")); err != nil {
		t.Fatal(err)
	}
	requireClosedAfterPrefix(t, c, "POST /tx?nam") // the echo may race the cut
	waitReceived(t, e, "GET /stream\nPOST /tx?nam")
	requireEcho(t, dial(t, p), "POST /tx?name=b body") // only one armed
	if s := p.Stats(); s.Truncated != 1 || s.Cuts != 1 {
		t.Fatalf("stats %+v, want 1 truncated request and 1 cut", s)
	}
}

func proxyDropConnectionsKeepsAcceptingNewOnes(t *testing.T, p *Proxy, e *echoServer) {
	c := dial(t, p)
	requireEcho(t, c, "x")
	p.DropConnections()
	requireClosed(t, c, "")
	requireEcho(t, dial(t, p), "y")
}

func proxyCloseEndsEverything(t *testing.T, p *Proxy, e *echoServer) {
	c := dial(t, p)
	requireEcho(t, c, "x")
	p.Blackhole()
	held := dial(t, p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	requireClosed(t, c, "")
	requireClosed(t, held, "")
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatal("the proxy still accepts connections after Close")
	}
}

func proxyBlackholeAnswersLetsRequestsThrough(t *testing.T, p *Proxy, e *echoServer) {
	c := dial(t, p)
	requireEcho(t, c, "before")
	p.BlackholeAnswers()
	requireStalled(t, c, "held")
	fresh := dial(t, p)
	requireStalled(t, fresh, "new")
	waitReceived(t, e, "beforeheldnew")
	p.Heal()
	for _, tc := range []struct {
		c    net.Conn
		want string
	}{{c, "held"}, {fresh, "new"}} {
		_ = tc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, len(tc.want))
		if _, err := io.ReadFull(tc.c, buf); err != nil || string(buf) != tc.want {
			t.Fatalf("after Heal: got %q, %v; want %q", buf, err, tc.want)
		}
	}
}
