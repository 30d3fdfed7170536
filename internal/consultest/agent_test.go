package consultest

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"
)

// TestStopRestart checks the agent's life cycle: usable after Start,
// unreachable after Stop, usable again at the same URL after Restart with
// an empty KV store.
func TestStopRestart(t *testing.T) {
	a := Start(t)
	if !strings.HasPrefix(a.URL, "http://127.0.0.1:") {
		t.Fatalf("URL = %s", a.URL)
	}
	url := a.URL
	kv := a.Client(t).KV()
	if _, err := kv.Put(&api.KVPair{Key: "k", Value: []byte("v")}, nil); err != nil {
		t.Fatalf("put: %v", err)
	}

	a.Stop(t)
	if _, _, err := kv.Get("k", nil); err == nil {
		t.Fatal("get succeeded on a stopped agent")
	}
	a.Stop(t) // no-op

	a.Restart(t)
	if a.URL != url {
		t.Fatalf("URL changed from %s to %s", url, a.URL)
	}
	pair, _, err := kv.Get("k", nil)
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if pair != nil {
		t.Fatalf("dev agent kept k=%q across a restart", pair.Value)
	}
	if _, _, err := a.Client(t).Session().Create(&api.SessionEntry{Node: a.Node}, nil); err != nil {
		t.Fatalf("create session after restart: %v", err)
	}
	if n := strings.Count(a.Logs(), "=== consultest "); n != 2 {
		t.Fatalf("logs show %d runs, want 2:\n%s", n, a.Logs())
	}
}

// TestRestartPortTaken checks that Restart fails clearly when a port was
// taken meanwhile.
func TestRestartPortTaken(t *testing.T) {
	a := Start(t)
	a.Stop(t)
	l, err := net.Listen("tcp", strings.TrimPrefix(a.URL, "http://"))
	if err != nil {
		t.Fatalf("take the agent's port: %v", err)
	}
	defer l.Close()
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() { defer close(done); a.Restart(rec) }()
	<-done
	if !strings.Contains(rec.msg, "taken meanwhile") {
		t.Fatalf("Restart on a taken port: %q", rec.msg)
	}
}

// fatalRecorder records Fatalf instead of failing the test; like
// testing.T's, its Fatalf ends the calling goroutine.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestTail checks the truncation of the log dump.
func TestTail(t *testing.T) {
	if got := tail("abc", 5); got != "abc" {
		t.Fatalf("tail = %q", got)
	}
	if got := tail("abcdef", 2); got != "... (truncated)\nef" {
		t.Fatalf("tail = %q", got)
	}
}
