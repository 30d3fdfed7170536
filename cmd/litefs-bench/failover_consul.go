package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// The failover section's Consul agent: a `consul agent -dev` on loopback
// with free ports, started and killed by the benchmark itself.

// errNoConsul is wrapped by the error of a failover section that could not
// run because the consul binary is missing.
var errNoConsul = errors.New("consul binary not found")

// consulBinary returns $LITEFS_CONSUL, else bin/consul (relative to the
// working directory, like -litefs), or an error saying how to get it.
func consulBinary() (string, error) {
	path := os.Getenv("LITEFS_CONSUL")
	if path == "" {
		path = filepath.Join("bin", "consul")
	}
	info, err := os.Stat(path)
	if err == nil && (info.IsDir() || info.Mode()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		return "", fmt.Errorf("%w at %s (%w): run `make consul` (builds bin/consul, 3.5-6 minutes once) or set LITEFS_CONSUL to a consul binary",
			errNoConsul, path, err)
	}
	return path, nil
}

// consulAgent is a `consul agent -dev` started for the section.
type consulAgent struct {
	url  string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startConsul starts a dev agent on 127.0.0.1 with free ports (DNS and
// gRPC off), its data and output in dir, and waits until it has a leader
// and its node's checks pass (sessions need both). On failure the agent is
// already stopped.
func startConsul(ctx context.Context, bin, dir string) (*consulAgent, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	hcl := fmt.Sprintf("ports {\n  http = %d\n  dns = -1\n  grpc = -1\n  grpc_tls = -1\n  serf_lan = %d\n  serf_wan = %d\n  server = %d\n}\n",
		ports[0], ports[1], ports[2], ports[3])
	cfg := filepath.Join(dir, "consul-ports.hcl")
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		return nil, fmt.Errorf("write consul config: %w", err)
	}
	a := &consulAgent{url: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), log: filepath.Join(dir, "consul.log"), done: make(chan struct{})}
	logFile, err := os.Create(a.log)
	if err != nil {
		return nil, fmt.Errorf("create consul log: %w", err)
	}
	defer logFile.Close()
	a.cmd = exec.Command(bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-node", consulNodeName,
		"-data-dir", filepath.Join(dir, "consul-data"), "-config-file", cfg, "-log-level", "warn")
	a.cmd.Stdout, a.cmd.Stderr = logFile, logFile
	// Own process group (a Ctrl-C reaches only the benchmark), and killed
	// with the benchmark if it dies without cleaning up.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	if err := a.waitReady(ctx); err != nil {
		return nil, errors.Join(err, a.stop())
	}
	return a, nil
}

// waitReady polls until the agent has a leader and passing node checks.
func (a *consulAgent) waitReady(ctx context.Context) error {
	client, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(a.url, "http://")})
	if err != nil {
		return fmt.Errorf("consul client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, consulReadyTimeout)
	defer cancel()
	q := (&api.QueryOptions{}).WithContext(ctx)
	for {
		err = consulReady(client, q)
		if err == nil {
			return nil
		}
		select {
		case <-a.done:
			return fmt.Errorf("consul agent exited (%v); its output is in %s", a.cmd.ProcessState, a.log)
		case <-ctx.Done():
			return fmt.Errorf("consul agent at %s not ready: %w (last check: %w)", a.url, ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// consulReady returns nil once the agent reports a leader and its node's
// checks (serfHealth) pass.
func consulReady(client *api.Client, q *api.QueryOptions) error {
	leader, err := client.Status().LeaderWithQueryOptions(q)
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	if leader == "" {
		return errors.New("no leader yet")
	}
	checks, _, err := client.Health().Node(consulNodeName, q)
	if err != nil {
		return fmt.Errorf("node health: %w", err)
	}
	if len(checks) == 0 {
		return errors.New("node has no checks yet")
	}
	if s := checks.AggregatedStatus(); s != api.HealthPassing {
		return fmt.Errorf("node checks are %s", s)
	}
	return nil
}

// stop kills the agent (dev mode keeps nothing worth a clean shutdown) and
// waits for it to exit. It is safe to call more than once.
func (a *consulAgent) stop() error {
	select {
	case <-a.done:
		return nil
	default:
	}
	_ = a.cmd.Process.Kill()
	select {
	case <-a.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("consul agent (pid %d) still running %s after SIGKILL", a.cmd.Process.Pid, stopTimeout)
	}
}

// freePorts returns n distinct ports free on 127.0.0.1 for both TCP and
// UDP (serf uses both) at the time of the call.
func freePorts(n int) ([]int, error) {
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		held = append(held, l)
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // keep the TCP port held so it is not picked again
		}
		held = append(held, u)
		ports = append(ports, port)
	}
	return ports, nil
}
