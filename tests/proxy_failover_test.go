package tests

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxy_PrimaryGoneMidRequestGives503 kills the primary while a write
// forwarded by a replica's proxy is streaming its body, and while a
// forwarded stream is being read: the client gets a clear 503 (or, once
// the answer has begun, a cut connection), never a hang; a write after
// the primary is gone gets 503 at once too.
func TestProxy_PrimaryGoneMidRequestGives503(t *testing.T) {
	p := startProxyNode(t, "p", NodeOptions{}, "  always-forward: [\"^/always/\"]\n")
	createItemTables(t, p)
	r := startProxyNode(t, "r", NodeOptions{Primary: p.Node}, "  always-forward: [\"^/always/\"]\n  primary-redirect-timeout: 1s\n")
	r.App.open(t, r.Node)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A forwarded stream (server-sent events from the primary) is cut.
	req, _ := http.NewRequestWithContext(ctx, "GET", r.ProxyURL()+"/always/sse?n=100", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "from p") {
		t.Fatalf("first event: %q, %v", line, err)
	}

	// An upload in flight when the primary dies.
	pr, pw := io.Pipe()
	defer pw.Close()
	up, _ := http.NewRequestWithContext(ctx, "POST", r.ProxyURL()+"/upload", pr)
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.DefaultClient.Do(up)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	go func() {
		chunk := make([]byte, 64<<10)
		for ctx.Err() == nil {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the body is flowing to the primary's app
	start := time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}

	select {
	case res := <-done:
		if res.err != nil || res.code != http.StatusServiceUnavailable || !strings.Contains(res.body, "primary") {
			t.Errorf("upload when the primary died: %d %q %v, want 503 naming the primary", res.code, res.body, res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upload: no answer within 10s of the primary's death")
	}
	if _, err := io.ReadAll(br); err == nil {
		t.Error("the forwarded stream ended cleanly although the primary died in its middle")
	}
	t.Logf("answered %s after the kill", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	code, body, _ := do(t, http.DefaultClient, "POST", r.ProxyURL()+"/items/app.db", "late")
	if code != http.StatusServiceUnavailable || time.Since(start) > 10*time.Second {
		t.Errorf("write after the primary died: %d %q after %s, want a prompt 503", code, body, time.Since(start))
	}
}
