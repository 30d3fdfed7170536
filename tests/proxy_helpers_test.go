package tests

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyNode is a node with its HTTP proxy and the test application behind it.
type proxyNode struct {
	*Node
	App       *testApp
	ProxyAddr string // 127.0.0.1:<port>
}

// ProxyURL is the base URL of the node's proxy.
func (p *proxyNode) ProxyURL() string { return "http://" + p.ProxyAddr }

// startProxyNode starts the application and a node whose proxy fronts it.
// proxyKeys are more keys of the proxy section, each line indented by two
// spaces (e.g. "  max-lag: 1s\n"). It returns once /litefs/health is 200.
func startProxyNode(t *testing.T, name string, opts NodeOptions, proxyKeys string) *proxyNode {
	t.Helper()
	app := startApp(t, name)
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(t))
	opts.Name = name
	opts.Extra += fmt.Sprintf("proxy:\n  addr: %q\n  target: %q\n  db: app.db\n%s", addr, app.Addr(), proxyKeys)
	n := StartNode(t, opts)
	p := &proxyNode{Node: n, App: app, ProxyAddr: addr}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.ProxyURL() + "/litefs/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy of %s not healthy within 20s (last error %v)", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replicaLease is the lease section of a static replica whose primary's
// API is reached at url (e.g. through a delayProxy).
func replicaLease(primary *Node, url string) string {
	return fmt.Sprintf("lease:\n  type: static\n  candidate: false\n  hostname: %q\n  advertise-url: %q\n", primary.Name, url)
}

// delayProxy is a TCP forwarder on loopback that delays every chunk sent
// from the target back to the client by delay: replication from a
// primary reaches a replica behind it late.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

// startDelayProxy forwards a loopback port to target until the test ends.
func startDelayProxy(t *testing.T, target string, delay time.Duration) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &delayProxy{ln: ln, target: target, delay: delay}
	d.wg.Add(1)
	go d.accept()
	t.Cleanup(d.close)
	return d
}

// URL is the forwarder's base URL.
func (d *delayProxy) URL() string { return "http://" + d.ln.Addr().String() }

func (d *delayProxy) accept() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", d.target, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		d.mu.Lock()
		d.conns = append(d.conns, c, u)
		d.mu.Unlock()
		d.wg.Add(2)
		go func() { defer d.wg.Done(); _, _ = io.Copy(u, c); u.Close() }()
		go func() { defer d.wg.Done(); d.copyDelayed(c, u); c.Close() }()
	}
}

// copyDelayed copies src to dst, each chunk delay after it was read.
func (d *delayProxy) copyDelayed(dst io.Writer, src io.Reader) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(d.delay)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (d *delayProxy) close() {
	d.ln.Close()
	d.mu.Lock()
	for _, c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// do sends one request through a client and returns status, body and the
// response; it fails the test on a transport error.
func do(t *testing.T, c *http.Client, method, url, body string, cookies ...*http.Cookie) (int, string, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, string(data), resp
}

// eventFeed is an open GET /events of a node.
type eventFeed struct {
	lines chan string
}

// openEvents subscribes to n's /events (with the proxy tests' token) until
// the test ends.
func openEvents(t *testing.T, n *Node) *eventFeed {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL()+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+proxyToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %s", resp.Status)
	}
	f := &eventFeed{lines: make(chan string, 1024)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case f.lines <- sc.Text():
			default:
			}
		}
	}()
	return f
}

// waitFor waits up to 10 s for an event line containing want.
func (f *eventFeed) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line := <-f.lines:
			if strings.Contains(line, want) {
				return
			}
		case <-deadline:
			t.Errorf("no event containing %s within 10s", want)
			return
		}
	}
}
