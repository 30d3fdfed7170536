package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs"
)

// newTestStore opens a real store in a temporary directory (no mount).
func newTestStore(t testing.TB) *litefs.Store {
	t.Helper()
	s, err := litefs.OpenStore(context.Background(), litefs.StoreOptions{Dir: t.TempDir(), SkipSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startProxy serves a proxy of store on loopback and returns its URL.
func startProxy(t testing.TB, store *litefs.Store, cfg Config) string {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.DB == "" {
		cfg.DB = "app.db"
	}
	s, err := New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + s.Addr()
}

func get(t *testing.T, method, url string) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestServer_DialRetriesWhileTheAppStarts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there yet
	url := startProxy(t, newTestStore(t), Config{Target: addr})
	go func() {
		time.Sleep(500 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "app up") })}
		t.Cleanup(func() { srv.Close() })
		_ = srv.Serve(ln)
	}()
	code, body, _ := get(t, "GET", url+"/")
	if code != http.StatusOK || body != "app up" {
		t.Fatalf("GET while the app starts: %d %q, want the app's answer", code, body)
	}
}

func TestServer_AppThatNeverStartsGives502(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	url := startProxy(t, newTestStore(t), Config{Target: addr, DialRetryTimeout: 300 * time.Millisecond})
	start := time.Now()
	code, body, _ := get(t, "GET", url+"/")
	if code != http.StatusBadGateway || !strings.Contains(body, "did not answer") {
		t.Fatalf("GET without an app: %d %q, want 502", code, body)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Errorf("502 after %s, want after the dial retry timeout (300ms)", took)
	}
}

func TestServer_HealthFollowsLag(t *testing.T) {
	store := newTestStore(t)
	url := startProxy(t, store, Config{Target: "127.0.0.1:1", MaxLag: 10 * time.Second})
	tests := []struct {
		name  string
		setup func()
		code  int
		body  string
	}{
		{"primary", func() {}, 200, "OK"},
		{"replica not connected", func() { store.SetReplica(&litefs.PrimaryInfo{Hostname: "p", AdvertiseURL: "http://127.0.0.1:1"}) }, 503, "not connected"},
		{"replica not caught up", func() { store.SetConnected(true, false, 0) }, 503, "not caught up"},
		{"replica within max-lag", func() { store.SetConnected(true, true, time.Second) }, 200, "OK"},
		{"replica beyond max-lag", func() { store.SetConnected(true, true, 20*time.Second) }, 503, "exceeds proxy.max-lag"},
		{"replica disconnected again", func() { store.SetConnected(false, false, 0) }, 503, "not connected"},
	}
	for _, tt := range tests {
		tt.setup()
		code, body, _ := get(t, "GET", url+HealthPath)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("%s: %d %q, want %d %q", tt.name, code, body, tt.code, tt.body)
		}
	}
}

func TestServer_WriteOnPrimaryRefreshesTXIDCookies(t *testing.T) {
	store := newTestStore(t)
	if _, err := store.CreateDB("app.db"); err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Method) }))
	t.Cleanup(app.Close)
	url := startProxy(t, store, Config{Target: app.URL, AlwaysForward: []string{"^/w/"}})
	for _, tt := range []struct {
		method, path string
		write        bool
	}{{"POST", "/x", true}, {"DELETE", "/x", true}, {"GET", "/w/1", true}, {"GET", "/x", false}, {"HEAD", "/x", false}} {
		req, _ := http.NewRequest(tt.method, url+tt.path, nil)
		req.Header.Set("Cookie", "__txids=b.db=0000000000000005")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		set := strings.Join(resp.Header.Values("Set-Cookie"), "\n")
		// The client's earlier write to b.db is kept; app.db at TXID 0
		// (never written) gets no cookie: there is nothing to wait for.
		want := "__txids=b.db=0000000000000005; Path=/; Max-Age=300; HttpOnly; SameSite=Lax"
		if !tt.write {
			want = ""
		}
		if resp.StatusCode != 200 || set != want {
			t.Errorf("%s %s: %d Set-Cookie %q, want %q", tt.method, tt.path, resp.StatusCode, set, want)
		}
	}
}

func TestServer_WriteWithoutAKnownPrimaryGives503(t *testing.T) {
	store := newTestStore(t)
	store.SetReplica(&litefs.PrimaryInfo{})
	url := startProxy(t, store, Config{Target: "127.0.0.1:1", PrimaryRedirectTimeout: 200 * time.Millisecond})
	code, body, _ := get(t, "POST", url+"/x")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no primary is known") {
		t.Fatalf("POST without a primary: %d %q, want 503", code, body)
	}
}

// TestServer_ForwardedWriteEndsWhenThePrimaryChanges: a primary that
// accepts a forwarded write and never answers (cut off by a partition)
// does not hold the client once this replica follows another primary.
func TestServer_ForwardedWriteEndsWhenThePrimaryChanges(t *testing.T) {
	release := make(chan struct{})
	var hung *httptest.Server
	hung = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/info" {
			io.WriteString(w, `{"role":"primary","proxyURL":"`+hung.URL+`"}`)
			return
		}
		select { // the partitioned primary: never answers
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hung.Close)
	t.Cleanup(func() { close(release) }) // runs before hung.Close
	store := newTestStore(t)
	store.SetReplica(&litefs.PrimaryInfo{Hostname: "old", AdvertiseURL: hung.URL})
	url := startProxy(t, store, Config{Target: "127.0.0.1:1"})
	go func() {
		time.Sleep(500 * time.Millisecond)
		store.SetReplica(&litefs.PrimaryInfo{Hostname: "new", AdvertiseURL: "http://127.0.0.1:1"})
	}()
	start := time.Now()
	code, body, _ := get(t, "POST", url+"/x")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "primary changed") {
		t.Fatalf("POST to a hung primary that lost the role: %d %q, want 503", code, body)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("503 after %s, want soon after the change (500ms)", took)
	}
}
