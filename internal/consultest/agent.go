// Package consultest runs a real Consul agent (`consul agent -dev`) for
// tests: the consul package's tests and the end-to-end tests in tests/
// share this one implementation.
//
// The binary is $LITEFS_CONSUL, else bin/consul at the repository root
// (scripts/build-consul.sh builds it). A missing binary fails the test: a
// test that needs Consul never passes, nor skips, without it.
package consultest

import (
	"context"
	"errors"
	"fmt"
	"github.com/litefs/litefs/internal/testbin"
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

// Time limits and sizes used by Agent.
const (
	// readyTimeout bounds the wait for a leader and a passing serfHealth.
	readyTimeout = 30 * time.Second
	// exitTimeout bounds the wait for the agent to exit after SIGKILL.
	exitTimeout = 10 * time.Second
	// maxLogDump is the most agent output dumped into a failing test's log.
	maxLogDump = 64 << 10
)

// Agent is a real Consul agent (consul agent -dev) on loopback with free
// ports, started by Start for one test and killed when the test ends. Dev
// mode keeps everything in memory: a Restart starts with an empty KV store.
type Agent struct {
	// URL is the agent's HTTP API address, http://127.0.0.1:PORT; it stays
	// the same across Stop and Restart.
	URL string
	// Node is the agent's node name (whose serfHealth check sessions use).
	Node string

	bin   string
	dir   string // holds the ports config and one data dir per run
	cfg   string // path of the ports config
	ports []int  // http, serf_lan, serf_wan, server
	logs  *testbin.SyncBuffer

	mu   sync.Mutex
	proc *process // current (or last) agent process
	runs int      // number of processes started so far
}

// process is one run of the agent binary.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned
}

// Start starts a dev agent on 127.0.0.1 with free HTTP, serf LAN/WAN and
// server ports (DNS and gRPC off) and a temporary data directory, and waits
// until it has a leader and its node has a passing serfHealth check
// (sessions need both). Its t.Cleanup kills the agent, waits for it and,
// if the test failed, logs the tail of the agent's output. A missing consul
// binary fails the test.
func Start(t testing.TB) *Agent {
	t.Helper()
	bin, err := FindBinary()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: the consul binary is required: %v", err)
		}
		t.Fatalf("consultest: %v", err)
	}
	a, err := Launch(bin, t.TempDir(), "litefs-test")
	if a != nil {
		t.Cleanup(func() {
			if err := a.Close(); err != nil {
				t.Logf("consultest cleanup: %v", err)
			}
			if t.Failed() {
				t.Logf("consul agent %s output:\n%s", a.URL, tail(a.Logs(), maxLogDump))
			}
		})
	}
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	return a
}

// Launch starts a dev agent like Start, outside a test (the benchmark uses
// it): bin is the consul binary, dir holds its config and data, node is its
// node name. On error the agent is stopped; a non-nil Agent is returned
// anyway when it got as far as starting, so that its Logs can be shown.
// Close stops it.
func Launch(bin, dir, node string) (*Agent, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	hcl := fmt.Sprintf("ports {\n  http = %d\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n  serf_lan = %d\n  serf_wan = %d\n  server = %d\n}\n",
		ports[0], ports[1], ports[2], ports[3])
	cfg := filepath.Join(dir, "ports.hcl")
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		return nil, fmt.Errorf("write agent config: %w", err)
	}
	a := &Agent{
		URL:   fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		Node:  node,
		bin:   bin,
		dir:   dir,
		cfg:   cfg,
		ports: ports,
		logs:  &testbin.SyncBuffer{},
	}
	return a, a.run()
}

// Close kills the agent and waits for it to exit. It is safe to call more
// than once.
func (a *Agent) Close() error { return a.kill() }

// Stop kills the agent with SIGKILL and waits for it to exit: from then on
// Consul is unreachable at URL until Restart. Stopping a stopped agent is a
// no-op.
func (a *Agent) Stop(t testing.TB) {
	t.Helper()
	if err := a.kill(); err != nil {
		t.Fatalf("consultest: %v", err)
	}
}

// Restart starts the agent again on the same ports, so URL is unchanged,
// stopping it first if it is running, and waits until it is usable as
// Start does. Dev mode keeps no state: the KV store and sessions are empty
// afterwards. It fails the test if one of the ports was taken meanwhile.
func (a *Agent) Restart(t testing.TB) {
	t.Helper()
	if err := a.kill(); err != nil {
		t.Fatalf("consultest: restart: %v", err)
	}
	for _, port := range a.ports {
		if err := checkFree(port); err != nil {
			t.Fatalf("consultest: restart of the agent at %s on the same ports %v: %v", a.URL, a.ports, err)
		}
	}
	if err := a.run(); err != nil {
		t.Fatalf("consultest: restart: %v", err)
	}
}

// Logs returns the agent's output so far, all runs included.
func (a *Agent) Logs() string { return a.logs.String() }

// Client returns a Consul API client for the agent, for checks and setup
// made by the tests themselves.
func (a *Agent) Client(t testing.TB) *api.Client {
	t.Helper()
	c, err := a.newClient()
	if err != nil {
		t.Fatalf("consultest: %v", err)
	}
	return c
}

// newClient returns an API client for URL.
func (a *Agent) newClient() (*api.Client, error) {
	c, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(a.URL, "http://")})
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", a.URL, err)
	}
	return c, nil
}

// run starts one agent process with a fresh data directory and waits until
// it is ready; on failure the process is killed.
func (a *Agent) run() error {
	a.mu.Lock()
	a.runs++
	run := a.runs
	a.mu.Unlock()
	data := filepath.Join(a.dir, fmt.Sprintf("data-%d", run))
	cmd := exec.Command(a.bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-node", a.Node, "-data-dir", data, "-config-file", a.cfg, "-log-level", "warn")
	cmd.Stdout, cmd.Stderr = a.logs, a.logs
	// The agent dies with the test binary even if no cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(a.logs, "=== consultest %s: run %d: %s\n", time.Now().Format("15:04:05.000"), run, strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start consul agent: %w", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	a.mu.Lock()
	a.proc = p
	a.mu.Unlock()
	if err := a.waitReady(p, readyTimeout); err != nil {
		err = fmt.Errorf("consul agent at %s not ready (its output follows at cleanup): %w", a.URL, err)
		if kerr := a.kill(); kerr != nil {
			err = errors.Join(err, kerr)
		}
		return err
	}
	return nil
}

// waitReady polls (this is test setup, not the code under test) until the
// agent has a leader and its node's checks pass, so it can create sessions.
func (a *Agent) waitReady(p *process, timeout time.Duration) error {
	client, err := a.newClient()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		err = ready(ctx, client, a.Node)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("agent exited (%v)", p.cmd.ProcessState)
		case <-ctx.Done():
			return fmt.Errorf("%w (last check: %w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready returns nil if the agent reports a leader and node's checks
// (serfHealth) all pass.
func ready(ctx context.Context, client *api.Client, node string) error {
	leader, err := client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	checks, _, err := client.Health().Node(node, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("health of node %s: %w", node, err)
	}
	if len(checks) == 0 {
		return fmt.Errorf("node %s has no checks yet", node)
	}
	if s := checks.AggregatedStatus(); s != api.HealthPassing {
		return fmt.Errorf("node %s checks are %s", node, s)
	}
	return nil
}

// kill SIGKILLs the current process, if any is running, and waits
// (bounded) for it to exit.
func (a *Agent) kill() error {
	a.mu.Lock()
	p := a.proc
	a.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return nil
	default:
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		return nil
	case <-time.After(exitTimeout):
		return fmt.Errorf("consul agent (pid %d) still running %s after SIGKILL", p.cmd.Process.Pid, exitTimeout)
	}
}

// FindBinary returns the consul binary: $LITEFS_CONSUL, else bin/consul
// at the repository root (found from the working directory). A missing
// binary is an error saying how to build it.
func FindBinary() (string, error) {
	return testbin.Find("LITEFS_CONSUL", "consul", "run make consul (builds bin/consul from tests/tools, a few minutes once)")
}

// freePorts returns n distinct ports free on 127.0.0.1 for both TCP and UDP
// (serf uses both) at the time of the call.
func freePorts(n int) ([]int, error) {
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
			return nil, fmt.Errorf("find a free port: %w", err)
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
	return ports, nil
}

// checkFree returns an error if port cannot be bound on 127.0.0.1 for TCP
// or UDP right now.
func checkFree(port int) error {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("port %d was taken meanwhile (tcp): %w", port, err)
	}
	_ = l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("port %d was taken meanwhile (udp): %w", port, err)
	}
	_ = u.Close()
	return nil
}

// tail returns the last n bytes of s, marked as truncated if cut.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "... (truncated)\n" + s[len(s)-n:]
}
