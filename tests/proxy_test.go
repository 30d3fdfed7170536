package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"
)

const proxyToken = "proxy-test-token"

// proxyCluster is a primary and two replicas, each behind its proxy: r1
// reaches the primary through a forwarder that delays replication by
// 150 ms per chunk and retries failed reads on the primary; r2 answers
// writes with fly-replay.
type proxyCluster struct {
	p, r1, r2 *proxyNode
}

const commonProxyKeys = "  passthrough: [\"*.png\"]\n  always-forward: [\"^/always/\"]\n"

func startProxyCluster(t *testing.T) *proxyCluster {
	t.Helper()
	env := []string{"LITEFS_AUTH_TOKEN=" + proxyToken}
	c := &proxyCluster{}
	c.p = startProxyNode(t, "p", NodeOptions{Env: env}, commonProxyKeys)
	createItemTables(t, c.p)
	fwd := startDelayProxy(t, c.p.Addr, 150*time.Millisecond)
	c.r1 = startProxyNode(t, "r1", NodeOptions{Env: env, Lease: replicaLease(c.p.Node, fwd.URL())},
		commonProxyKeys+"  max-lag: 5s\n  retry-failed-reads-on-primary: true\n")
	c.r2 = startProxyNode(t, "r2", NodeOptions{Env: env, Primary: c.p.Node},
		commonProxyKeys+"  max-lag: 1s\n  fly-replay: true\n")
	c.r1.App.open(t, c.r1.Node)
	c.r2.App.open(t, c.r2.Node)
	return c
}

// createItemTables creates the app's table in app.db and other.db on the
// primary p and lets p's app use them.
func createItemTables(t *testing.T, p *proxyNode) {
	t.Helper()
	for _, name := range []string{"app.db", "other.db"} {
		db := OpenDB(t, p.DBPath(name), "")
		if _, err := db.Exec(`CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
			t.Fatalf("create table in %s: %v", name, err)
		}
	}
	p.App.open(t, p.Node)
}

func newJarClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 60 * time.Second}
}

func TestProxy_Cluster(t *testing.T) {
	c := startProxyCluster(t)
	t.Run("WriteOnReplicaLandsOnPrimaryAndReadSeesIt", func(t *testing.T) { testReadYourWrites(t, c) })
	t.Run("TXIDThatNeverArrivesGets504", func(t *testing.T) { testWait504(t, c) })
	t.Run("PassthroughAndAlwaysForward", func(t *testing.T) { testPatterns(t, c) })
	t.Run("ForwardedRequestCarriesTokenAndKeepsAppHeaders", func(t *testing.T) { testForwardAuth(t, c) })
	t.Run("FlyReplayAnswersInsteadOfForwarding", func(t *testing.T) { testFlyReplay(t, c) })
	t.Run("WebSocketAndSSEPassThrough", func(t *testing.T) { testStreaming(t, c) })
	t.Run("LargeUploadAndDownloadThroughPrimary", func(t *testing.T) { testLargeUpload(t, c) })
	t.Run("ReadThatWritesIsRetriedOnPrimary", func(t *testing.T) { testRetryRead(t, c) })
	t.Run("HealthAndMetrics", func(t *testing.T) { testHealthMetrics(t, c) })
}

// testReadYourWrites: POSTs on the delayed replica land on the primary
// with their response intact; the GET that follows, with the cookie, on
// either replica sees the write every time, for both databases.
func testReadYourWrites(t *testing.T, c *proxyCluster) {
	client := newJarClient(t)
	for i := range 30 {
		db := []string{"app.db", "other.db"}[i%2]
		val := fmt.Sprintf("value-%d", i)
		code, body, resp := do(t, client, "POST", c.r1.ProxyURL()+"/items/"+db, val)
		if code != http.StatusCreated || !strings.HasSuffix(body, " node=p") {
			t.Fatalf("POST %d on r1: %d %q, want 201 from the primary", i, code, body)
		}
		wantCookie := "__txid="
		if db == "other.db" {
			wantCookie = "__txids=other.db="
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), wantCookie) {
			t.Fatalf("POST %d: Set-Cookie %q lacks %s", i, resp.Header.Values("Set-Cookie"), wantCookie)
		}
		var id int
		fmt.Sscanf(body, "id=%d", &id)
		for _, r := range []*proxyNode{c.r1, c.r2} {
			code, got, _ := do(t, client, "GET", fmt.Sprintf("%s/items/%s/%d", r.ProxyURL(), db, id), "")
			if want := val + " node=" + r.Name; code != http.StatusOK || got != want {
				t.Fatalf("GET %d on %s after the write: %d %q, want 200 %q (a stale read)", i, r.Name, code, got, want)
			}
		}
	}
}

// testWait504: a read whose TXID never arrives gets 504 after max-lag,
// and r2's /events reports it.
func testWait504(t *testing.T, c *proxyCluster) {
	events := openEvents(t, c.r2.Node)
	start := time.Now()
	code, body, resp := do(t, http.DefaultClient, "GET", c.r2.ProxyURL()+"/items/app.db/1", "",
		&http.Cookie{Name: "__txid", Value: "00000000ffffffff"})
	took := time.Since(start)
	if code != http.StatusGatewayTimeout || !strings.Contains(body, "proxy.max-lag") {
		t.Fatalf("GET with an unreachable TXID: %d %q, want 504 naming proxy.max-lag", code, body)
	}
	if took < 900*time.Millisecond || took > 5*time.Second {
		t.Errorf("504 after %s, want about proxy.max-lag (1s)", took)
	}
	events.waitFor(t, `"type":"proxy","data":{"event":"wait-timeout","method":"GET","path":"/items/app.db/1"`)
	if set := strings.Join(resp.Header.Values("Set-Cookie"), "\n"); !strings.Contains(set, "__txid=; Path=/; Max-Age=0") {
		t.Errorf("the 504 does not clear the __txid cookie (Set-Cookie %q): every read would wait again", set)
	}
	code, body, _ = do(t, http.DefaultClient, "GET", c.r2.ProxyURL()+"/items/app.db/1", "", &http.Cookie{Name: "__txid", Value: "12"})
	if code != http.StatusBadRequest || !strings.Contains(body, "16 hex digits") {
		t.Errorf("GET with a malformed __txid: %d %q, want 400", code, body)
	}
}

// testPatterns: passthrough skips the wait and the forwarding;
// always-forward sends a GET to the primary.
func testPatterns(t *testing.T, c *proxyCluster) {
	far := &http.Cookie{Name: "__txid", Value: "00000000ffffffff"}
	code, body, _ := do(t, http.DefaultClient, "GET", c.r2.ProxyURL()+"/img/logo.png", "", far)
	if code != http.StatusOK || !strings.HasPrefix(body, "node=r2 ") {
		t.Errorf("GET passthrough with a far TXID: %d %q, want 200 from r2 without waiting", code, body)
	}
	code, body, _ = do(t, http.DefaultClient, "POST", c.r1.ProxyURL()+"/upload.png", "x")
	if code != http.StatusOK || !strings.HasPrefix(body, "node=r1 method=POST") {
		t.Errorf("POST passthrough: %d %q, want r1's own app", code, body)
	}
	code, body, _ = do(t, http.DefaultClient, "GET", c.r1.ProxyURL()+"/always/x", "")
	if code != http.StatusOK || !strings.HasPrefix(body, "node=p method=GET path=/always/x") {
		t.Errorf("GET always-forward: %d %q, want the primary", code, body)
	}
	code, body, _ = do(t, http.DefaultClient, "GET", c.r1.ProxyURL()+"/x/always/y", "") // ^ anchors the regexp
	if code != http.StatusOK || !strings.HasPrefix(body, "node=r1 ") {
		t.Errorf("GET elsewhere: %d %q, want r1", code, body)
	}
}

// testForwardAuth: the forwarded request reaches the primary's app
// without the proxy headers, with the app's own Authorization; a forged
// forwarded request without the token is refused.
func testForwardAuth(t *testing.T, c *proxyCluster) {
	req, _ := http.NewRequest("PUT", c.r1.ProxyURL()+"/echo", strings.NewReader("b"))
	req.Header.Set("Authorization", "Bearer the-app-s-own")
	req.Header.Set("X-Forwarded-Proto", "https") // as an edge terminating TLS says
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `node=p method=PUT path=/echo token="" forwarded="" auth="Bearer the-app-s-own" proto="https" xff="203.0.113.7, 127.0.0.1, 127.0.0.1"`
	if resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("forwarded PUT: %d %q, want %q", resp.StatusCode, body, want)
	}
	// A forwarded request reaching a replica is not forwarded again.
	req, _ = http.NewRequest("POST", c.r2.ProxyURL()+"/echo", nil)
	req.Header.Set("Litefs-Proxy-Forwarded", "00000000deadbeef")
	req.Header.Set("Litefs-Proxy-Token", proxyToken)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not forwarding it again") {
		t.Errorf("forwarded request on a replica: %d %q, want 503 (loop guard)", resp.StatusCode, body)
	}
	for _, tok := range []string{"", "wrong"} {
		req, _ := http.NewRequest("POST", c.p.ProxyURL()+"/echo", nil)
		req.Header.Set("Litefs-Proxy-Forwarded", "00000000deadbeef")
		req.Header.Set("Litefs-Proxy-Token", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "auth token") {
			t.Errorf("forged forwarded request, token %q: %d %q, want 401", tok, resp.StatusCode, body)
		}
	}
}

// testFlyReplay: with fly-replay the replica answers a write with the
// header naming the primary, and the write is not made.
func testFlyReplay(t *testing.T, c *proxyCluster) {
	code, body, resp := do(t, http.DefaultClient, "POST", c.r2.ProxyURL()+"/items/app.db", "replayed")
	if got := resp.Header.Get("Fly-Replay"); got != "instance=p" || code != http.StatusConflict {
		t.Errorf("POST on a fly-replay replica: %d fly-replay=%q %q, want 409 instance=p", code, got, body)
	}
	if strings.Contains(body, "id=") {
		t.Errorf("the write was made: %q", body)
	}
}

// testStreaming: a WebSocket echo and server-sent events through a
// replica's proxy, locally and (always-forward) to the primary.
func testStreaming(t *testing.T, c *proxyCluster) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tt := range []struct{ path, want string }{{"/ws", "hello from r1"}, {"/always/ws", "hello from p"}} {
		got, err := wsEcho(ctx, c.r1.ProxyAddr, tt.path, "hello")
		if err != nil || got != tt.want {
			t.Errorf("websocket %s: %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", c.r1.ProxyURL()+"/sse", nil)
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: event 0 from r1\n" {
		t.Fatalf("first SSE line %q, %v", line, err)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("first event after %s: the stream was buffered (the app sends it at once, the rest over 900ms)", took)
	}
}

// patternReader yields n deterministic bytes without holding them.
type patternReader struct{ n, off int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	for i := range p {
		x := r.off + int64(i)
		p[i] = byte(x ^ x>>8 ^ x>>16)
	}
	r.off += int64(len(p))
	return len(p), nil
}

// testLargeUpload: 100 MB streamed through r1's proxy to the primary's
// app, hash intact.
func testLargeUpload(t *testing.T, c *proxyCluster) {
	const size = 100 << 20
	h := sha256.New()
	_, _ = io.Copy(h, &patternReader{n: size})
	want := fmt.Sprintf("size=%d sha256=%s node=p", size, hex.EncodeToString(h.Sum(nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", c.r1.ProxyURL()+"/upload", &patternReader{n: size})
	req.ContentLength = -1 // chunked: the proxies cannot rely on a length
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != want {
		t.Errorf("upload: %d %q, want %q", resp.StatusCode, body, want)
	}

	// And 100 MB back from the primary's app (always-forward), streamed.
	req, _ = http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/always/blob?n=%d", c.r1.ProxyURL(), size), nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	if err != nil || n != size || resp.Header.Get("X-Node") != "p" || !bytes.Equal(got.Sum(nil), h.Sum(nil)) {
		t.Errorf("download: %d bytes from %q, err %v, hash match %t", n, resp.Header.Get("X-Node"), err, bytes.Equal(got.Sum(nil), h.Sum(nil)))
	}
}

// testRetryRead: a GET whose app write is refused on r1 (opt-in) is
// retried on the primary; on r2 (not opted in) the app's failure shows.
func testRetryRead(t *testing.T, c *proxyCluster) {
	code, body, resp := do(t, http.DefaultClient, "GET", c.r1.ProxyURL()+"/write-on-get", "")
	if code != http.StatusOK || body != "wrote node=p" {
		t.Errorf("GET that writes on r1: %d %q, want the primary's answer", code, body)
	}
	if set := strings.Join(resp.Header.Values("Set-Cookie"), "\n"); !strings.Contains(set, "__txid=") {
		t.Errorf("the retried GET wrote on the primary but sets no __txid (Set-Cookie %q)", set)
	}
	code, body, _ = do(t, http.DefaultClient, "GET", c.r2.ProxyURL()+"/write-on-get", "")
	if code != http.StatusInternalServerError || !strings.Contains(body, "write failed on r2") {
		t.Errorf("GET that writes on r2: %d %q, want the app's 500", code, body)
	}
}

// testHealthMetrics: /litefs/health and the proxy's metrics on /metrics.
func testHealthMetrics(t *testing.T, c *proxyCluster) {
	code, body, _ := do(t, http.DefaultClient, "GET", c.r1.ProxyURL()+"/litefs/health", "")
	if code != http.StatusOK {
		t.Errorf("health: %d %q", code, body)
	}
	_, metrics, _ := do(t, http.DefaultClient, "GET", c.r1.URL()+"/metrics", "")
	for _, want := range []string{`litefs_proxy_requests_total{route="forwarded_write"}`, `litefs_proxy_requests_total{route="waited_read"}`,
		"litefs_proxy_wait_seconds_count", "litefs_proxy_forward_seconds_sum", `litefs_proxy_requests_total{route="retried_read"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
