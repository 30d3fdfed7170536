package tests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/tlstest"
)

// Time limits used by Node.
const (
	// DefaultReadyTimeout bounds the wait for <mnt>/.lag after a start.
	DefaultReadyTimeout = 20 * time.Second
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	StopTimeout = 10 * time.Second
	// maxLogDump is the most daemon output dumped into a failing test's log.
	maxLogDump = 256 << 10
)

// NodeOptions configures StartNode. The zero value starts a static-lease
// primary on a free loopback port with fresh directories.
type NodeOptions struct {
	// Name is the node's lease hostname; default "node<N>".
	Name string
	// Primary, when set, makes this node a static-lease replica of Primary:
	// candidate false, hostname and advertise-url naming Primary.
	Primary *Node
	// Consul, when set, makes this node use a consul lease (see
	// ConsulLease); it takes precedence over Primary.
	Consul *ConsulLease
	// Lease, when set, replaces the whole generated `lease:` section
	// (it must start with "lease:"); it overrides Consul and Primary.
	Lease string
	// Retention, when set, is written as data.retention (e.g. "1s").
	Retention string
	// RetentionInterval, when set, is written as
	// data.retention-monitor-interval (e.g. "200ms"); Extra cannot add it
	// because the data section is generated here.
	RetentionInterval string
	// ExitOnError is written as exit-on-error (default false).
	ExitOnError bool
	// Extra is appended verbatim to the generated litefs.yml, e.g.
	// "strict-verify: true\n".
	Extra string
	// Args are appended to `litefs mount -config PATH`, e.g. {"--", "cmd"}.
	Args []string
	// Env holds extra KEY=VALUE entries for the daemon's environment.
	Env []string
	// Dir, when set, is used (and kept) as the node directory instead of a
	// fresh one; data/ and mnt/ are created in it if missing.
	Dir string
	// NoWait makes StartNode return as soon as the process has started,
	// without waiting for the mount (for tests of startup failures).
	NoWait bool
	// ReadyTimeout bounds the wait for the mount; default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// TLS, when set, is written as http.tls (docs/tls.md); the node's URL
	// is then https:// (see tls_test.go for making the files).
	TLS *tlstest.Files
}

// Node is one litefs daemon started by StartNode.
type Node struct {
	Name       string // lease hostname of this node
	Dir        string // node directory holding everything below
	DataDir    string // data.dir
	MountDir   string // fuse.dir
	ConfigPath string // litefs.yml
	LogPath    string // daemon stdout+stderr, appended across restarts
	Addr       string // http.addr, 127.0.0.1:<port>
	Port       int    // port of Addr

	// Cmd is the current (or last) daemon process; replaced by Restart.
	Cmd *exec.Cmd

	opts    NodeOptions
	ownsDir bool

	mu      sync.Mutex
	done    chan struct{} // closed when Cmd has exited
	waitErr error         // Cmd.Wait's result, valid once done is closed
	reaped  bool          // Cmd's process group was killed after Cmd exited
}

// StartNode writes a litefs.yml for a new node, starts `litefs mount` and
// waits until <mnt>/.lag exists. Its cleanup stops the daemon, removes the
// mount and dumps the daemon's output when the test failed.
func StartNode(t testing.TB, opts NodeOptions) *Node {
	t.Helper()
	RequireFUSE(t)
	bin := daemonPath(t)

	n := &Node{opts: opts, Name: opts.Name}
	if n.Name == "" {
		n.Name = fmt.Sprintf("node%d", nodeSeq.Add(1))
	}
	if err := n.prepareDirs(t.Name()); err != nil {
		t.Fatal(err)
	}
	n.Port = FreePort(t)
	n.Addr = fmt.Sprintf("127.0.0.1:%d", n.Port)
	if err := os.WriteFile(n.ConfigPath, []byte(n.configYAML()), 0o644); err != nil {
		t.Fatal(err)
	}

	liveMu.Lock()
	live[n] = struct{}{}
	liveMu.Unlock()
	t.Cleanup(func() { n.cleanup(t) })

	if err := n.start(bin); err != nil {
		t.Fatalf("start litefs %s: %v", n.Name, err)
	}
	if !opts.NoWait {
		n.WaitReady(t)
	}
	return n
}

// prepareDirs creates (or adopts) the node directory and its data/ and mnt/.
func (n *Node) prepareDirs(testName string) error {
	dir := n.opts.Dir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp(workRoot, sanitize(testName)+"-"+sanitize(n.Name)+"-"); err != nil {
			return err
		}
		n.ownsDir = true
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real // the mount table shows resolved paths
	}
	n.Dir = dir
	n.DataDir = filepath.Join(dir, "data")
	n.MountDir = filepath.Join(dir, "mnt")
	n.ConfigPath = filepath.Join(dir, "litefs.yml")
	n.LogPath = filepath.Join(dir, "litefs.log")
	for _, d := range []string{n.DataDir, n.MountDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// configYAML renders the node's litefs.yml.
func (n *Node) configYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "exit-on-error: %t\n", n.opts.ExitOnError)
	fmt.Fprintf(&b, "data:\n  dir: %q\n", n.DataDir)
	if n.opts.Retention != "" {
		fmt.Fprintf(&b, "  retention: %q\n", n.opts.Retention)
	}
	if n.opts.RetentionInterval != "" {
		fmt.Fprintf(&b, "  retention-monitor-interval: %q\n", n.opts.RetentionInterval)
	}
	fmt.Fprintf(&b, "fuse:\n  dir: %q\n", n.MountDir)
	fmt.Fprintf(&b, "http:\n  addr: %q\n", n.Addr)
	if f := n.opts.TLS; f != nil {
		fmt.Fprintf(&b, "  tls:\n    cert: %q\n    key: %q\n    ca: %q\n", f.Cert, f.Key, f.CA)
	}
	switch {
	case n.opts.Lease != "":
		b.WriteString(strings.TrimRight(n.opts.Lease, "\n") + "\n")
	case n.opts.Consul != nil:
		b.WriteString(n.opts.Consul.yaml(n))
	case n.opts.Primary != nil:
		p := n.opts.Primary
		fmt.Fprintf(&b, "lease:\n  type: static\n  candidate: false\n  hostname: %q\n  advertise-url: %q\n", p.Name, p.URL())
	default:
		fmt.Fprintf(&b, "lease:\n  type: static\n  candidate: true\n  hostname: %q\n  advertise-url: %q\n", n.Name, n.URL())
	}
	if n.opts.Extra != "" {
		b.WriteString(strings.TrimRight(n.opts.Extra, "\n") + "\n")
	}
	return b.String()
}

// start launches the daemon in its own process group, output to LogPath.
func (n *Node) start(bin string) error {
	logFile, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	args := append([]string{"mount", "-config", n.ConfigPath}, n.opts.Args...)
	fmt.Fprintf(logFile, "=== harness %s: %s %s\n", time.Now().Format("15:04:05.000"), bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), n.opts.Env...)
	// Own process group so Kill reaches the daemon's children too; Pdeathsig
	// so the daemon dies with the test binary even if no cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.Cmd, n.done, n.waitErr, n.reaped = cmd, done, nil, false
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logFile.Close()
		n.mu.Lock()
		n.waitErr = err
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// current returns the current process and its exit channel (nil if never started).
func (n *Node) current() (*exec.Cmd, chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Cmd, n.done
}

// Running reports whether the daemon process is still alive.
func (n *Node) Running() bool {
	cmd, done := n.current()
	if cmd == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// URL is the node's own HTTP base URL, http://127.0.0.1:<port>, or
// https:// with NodeOptions.TLS.
func (n *Node) URL() string {
	if n.opts.TLS != nil {
		return "https://" + n.Addr
	}
	return "http://" + n.Addr
}

// DBPath returns the path of database name inside the mount.
func (n *Node) DBPath(name string) string { return filepath.Join(n.MountDir, name) }

// Log returns the daemon's output so far (all runs of this node).
func (n *Node) Log() string {
	data, err := os.ReadFile(n.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", n.LogPath, err)
	}
	return string(data)
}

// WaitReady waits until <mnt>/.lag exists; it fails the test with the daemon
// log if the daemon exits first or the wait exceeds the ready timeout.
func (n *Node) WaitReady(t testing.TB) {
	t.Helper()
	limit := n.opts.ReadyTimeout
	if limit <= 0 {
		limit = DefaultReadyTimeout
	}
	_, done := n.current()
	lag := filepath.Join(n.MountDir, ".lag")
	deadline := time.Now().Add(limit)
	for {
		if _, err := statTimeout(lag, 2*time.Second); err == nil && IsMounted(n.MountDir) {
			return
		}
		select {
		case <-done:
			t.Fatalf("litefs %s exited before its mount was ready (%v); its log follows at cleanup", n.Name, n.exitErr())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("litefs %s: %s did not appear within %s; its log follows at cleanup", n.Name, lag, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exitErr returns the last process's Wait error (nil for exit status 0).
func (n *Node) exitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.waitErr
}

// WaitExit waits up to limit for the daemon to exit by itself and returns its
// exit code (-1 if killed by a signal). It does not touch the mount.
func (n *Node) WaitExit(limit time.Duration) (int, error) {
	cmd, done := n.current()
	if cmd == nil {
		return 0, errors.New("node was never started")
	}
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), nil
	case <-time.After(limit):
		return 0, fmt.Errorf("litefs %s still running after %s", n.Name, limit)
	}
}

// Stop sends SIGTERM, waits up to StopTimeout, then SIGKILLs the process
// group; it always ends with the mount removed. The error reports a daemon
// that needed SIGKILL, exited non-zero, left its mount behind, or a mount
// that could not be removed. Stopping a stopped node is a no-op.
func (n *Node) Stop() error {
	cmd, done := n.current()
	if cmd == nil {
		return nil
	}
	var errs []error
	select {
	case <-done:
	default:
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			if err := n.exitErr(); err != nil {
				errs = append(errs, fmt.Errorf("litefs %s exited after SIGTERM with %v", n.Name, err))
			}
			if IsMounted(n.MountDir) {
				errs = append(errs, fmt.Errorf("litefs %s exited but left %s mounted", n.Name, n.MountDir))
			}
		case <-time.After(StopTimeout):
			errs = append(errs, fmt.Errorf("litefs %s did not exit within %s of SIGTERM; killed", n.Name, StopTimeout))
		}
	}
	if err := n.killGroup(); err != nil {
		errs = append(errs, err)
	}
	if err := unmount(n.MountDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Kill SIGKILLs the daemon (and its process group), waits for it, and removes
// the mount the dead daemon leaves behind: a crash, as far as the data
// directory is concerned.
func (n *Node) Kill() error {
	err := n.killGroup()
	if uerr := unmount(n.MountDir); uerr != nil {
		err = errors.Join(err, uerr)
	}
	return err
}

// killGroup SIGKILLs the daemon's process group (which may outlive the
// daemon: its exec children) and waits, bounded, for the daemon to be reaped.
// Once that is done for a process it is not repeated, so a later call cannot
// signal a group whose id has been reused.
func (n *Node) killGroup() error {
	n.mu.Lock()
	cmd, done, reaped := n.Cmd, n.done, n.reaped
	n.mu.Unlock()
	if cmd == nil || reaped {
		return nil
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("litefs %s (pid %d) still not reaped 10s after SIGKILL", n.Name, cmd.Process.Pid)
	}
	n.mu.Lock()
	n.reaped = true
	n.mu.Unlock()
	return nil
}

// Restart starts the daemon again on the same directories, config and port
// (stopping it first if it is running) and waits for the mount.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	if n.Running() {
		if err := n.Stop(); err != nil {
			t.Fatalf("restart: %v", err)
		}
	}
	if err := unmount(n.MountDir); err != nil {
		t.Fatal(err)
	}
	if err := n.start(daemonPath(t)); err != nil {
		t.Fatalf("restart litefs %s: %v", n.Name, err)
	}
	if !n.opts.NoWait {
		n.WaitReady(t)
	}
}

// cleanup is StartNode's t.Cleanup: stop, unmount, dump the log on failure,
// remove the node directory if StartNode created it.
func (n *Node) cleanup(t testing.TB) {
	stopErr := n.Stop()
	if stopErr != nil {
		t.Logf("cleanup of litefs %s: %v", n.Name, stopErr)
	}
	mounted := IsMounted(n.MountDir)
	if !mounted {
		liveMu.Lock()
		delete(live, n)
		liveMu.Unlock()
	}
	if t.Failed() {
		log := n.Log()
		if len(log) > maxLogDump {
			log = "... (truncated)\n" + log[len(log)-maxLogDump:]
		}
		t.Logf("litefs %s log (%s):\n%s", n.Name, n.LogPath, log)
	}
	if n.ownsDir && !mounted {
		if err := os.RemoveAll(n.Dir); err != nil {
			t.Logf("remove %s: %v", n.Dir, err)
		}
	}
}
