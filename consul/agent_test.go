package consul

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

// testAgent is a real Consul agent (consul agent -dev) on loopback with
// free ports, started for one test and killed when it ends.
type testAgent struct {
	URL  string // http://127.0.0.1:PORT
	Node string

	cmd    *exec.Cmd
	exited chan struct{}
	logs   *syncBuffer
}

// consulBinary finds the consul binary: $LITEFS_CONSUL, else bin/consul at
// the repository root. A missing binary fails the test: a test that needs
// Consul must not pass without it (in CI or anywhere else).
func consulBinary(t *testing.T) string {
	t.Helper()
	path := os.Getenv("LITEFS_CONSUL")
	if path == "" {
		abs, err := filepath.Abs(filepath.Join("..", "bin", "consul"))
		if err != nil {
			t.Fatalf("locate bin/consul: %v", err)
		}
		path = abs
	}
	if _, err := os.Stat(path); err != nil {
		how := "run scripts/build-consul.sh (builds bin/consul from tests/tools, a few minutes once) or set LITEFS_CONSUL to a consul binary"
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: the consul binary is required and missing (%v): the CI script must %s", err, how)
		}
		t.Fatalf("consul binary not found (%v): %s", err, how)
	}
	return path
}

// startAgent starts a dev agent and waits until it has a leader and its
// node is registered with a passing serfHealth (sessions need both).
func startAgent(t *testing.T) *testAgent {
	t.Helper()
	bin := consulBinary(t)
	dir := t.TempDir()
	ports := freePorts(t, 4)
	hcl := fmt.Sprintf("ports {\n  http = %d\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n  serf_lan = %d\n  serf_wan = %d\n  server = %d\n}\n",
		ports[0], ports[1], ports[2], ports[3])
	cfgPath := filepath.Join(dir, "ports.hcl")
	if err := os.WriteFile(cfgPath, []byte(hcl), 0o644); err != nil {
		t.Fatalf("write agent config: %v", err)
	}
	a := &testAgent{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		Node:   "litefs-test",
		exited: make(chan struct{}),
		logs:   &syncBuffer{},
	}
	a.cmd = exec.Command(bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", a.Node, "-data-dir", filepath.Join(dir, "data"), "-config-file", cfgPath, "-log-level", "warn")
	a.cmd.Stdout, a.cmd.Stderr = a.logs, a.logs
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start consul agent: %v", err)
	}
	go func() { _ = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		a.Kill()
		if t.Failed() {
			t.Logf("consul agent output:\n%s", a.logs.String())
		}
	})
	if err := a.waitReady(30 * time.Second); err != nil {
		t.Fatalf("consul agent at %s not ready: %v\n%s", a.URL, err, a.logs.String())
	}
	return a
}

// waitReady polls (this is test setup, not the code under test) until the
// agent can create sessions.
func (a *testAgent) waitReady(timeout time.Duration) error {
	client, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(a.URL, "http://")})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		checks, _, err := client.Health().Node(a.Node, (&api.QueryOptions{}).WithContext(ctx))
		if err == nil && len(checks) > 0 && checks.AggregatedStatus() == api.HealthPassing {
			return nil
		}
		select {
		case <-a.exited:
			return errors.New("agent exited")
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill stops the agent with SIGKILL and waits for it to exit.
func (a *testAgent) Kill() {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = a.cmd.Process.Kill()
	<-a.exited
}

// Client returns an API client for checks made by the tests themselves.
func (a *testAgent) Client(t *testing.T) *api.Client {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(a.URL, "http://")})
	if err != nil {
		t.Fatalf("consul client: %v", err)
	}
	return c
}

// freePorts returns n distinct ports free on 127.0.0.1 for both TCP and UDP
// (serf uses both) at the time of the call.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var held []func()
	defer func() {
		for _, release := range held {
			release()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			_ = l.Close()
			continue
		}
		held = append(held, func() { _ = l.Close(); _ = u.Close() })
		ports = append(ports, port)
	}
	return ports
}

// syncBuffer is a bytes.Buffer safe for the agent's output goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
