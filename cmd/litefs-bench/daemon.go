package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	readyTimeout = 20 * time.Second // wait this long for <mnt>/.lag
	stopTimeout  = 10 * time.Second // SIGTERM grace before SIGKILL
	pollInterval = 50 * time.Millisecond
)

// workDir is the benchmark's temp directory: plain/ holds the baseline
// databases, data/ is the recording primary's data directory and mnt/ its
// FUSE mount; bare-*, replica-*, snap-* and halt-* belong to the other
// daemons. All live on the same filesystem, so the only difference between
// a plain run and a litefs run is litefs itself.
type workDir struct {
	root   string
	plain  string
	data   string
	mnt    string
	config string
	log    string
	bare   mountDirs // a second mount that records nothing: the cost of FUSE alone
	// replica follows the primary for the lag figures; snap starts empty
	// for the snapshot catch-up figure; halt is the replica that writes
	// under the HALT lock; backup is the primary with backup to S3 on.
	replica, snap, halt, backup mountDirs
	// proxyP and proxyR are the proxy section's primary and replica.
	proxyP, proxyR mountDirs
}

// mountDirs are the paths of one daemon.
type mountDirs struct{ data, mnt, config, log string }

// newWorkDir creates the temp directory, its plain/, data/ and mnt/ and the
// data and mount directories of the other daemons.
func newWorkDir() (*workDir, error) {
	root, err := os.MkdirTemp("", "litefs-bench-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	w := &workDir{
		root:    root,
		plain:   filepath.Join(root, "plain"),
		data:    filepath.Join(root, "data"),
		mnt:     filepath.Join(root, "mnt"),
		config:  filepath.Join(root, "litefs.yml"),
		log:     filepath.Join(root, "litefs.log"),
		bare:    namedDirs(root, "bare"),
		replica: namedDirs(root, "replica"),
		snap:    namedDirs(root, "snap"),
		halt:    namedDirs(root, "halt"),
		proxyP:  namedDirs(root, "proxy-primary"),
		proxyR:  namedDirs(root, "proxy-replica"),
		backup:  namedDirs(root, "backup"),
	}
	dirs := []string{w.plain, w.data, w.mnt}
	for _, m := range []mountDirs{w.bare, w.replica, w.snap, w.halt, w.proxyP, w.proxyR, w.backup} {
		dirs = append(dirs, m.data, m.mnt)
	}
	for _, dir := range dirs {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return w, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return w, nil
}

// namedDirs returns the paths of a daemon called name under root:
// name-data/, name-mnt/, name.yml and name.log.
func namedDirs(root, name string) mountDirs {
	return mountDirs{
		data: filepath.Join(root, name+"-data"), mnt: filepath.Join(root, name+"-mnt"),
		config: filepath.Join(root, name+".yml"), log: filepath.Join(root, name+".log"),
	}
}

// mounts returns every mount point of the benchmark's daemons.
func (w *workDir) mounts() []string {
	return []string{w.mnt, w.bare.mnt, w.replica.mnt, w.snap.mnt, w.halt.mnt, w.proxyP.mnt, w.proxyR.mnt, w.backup.mnt}
}

// configYAML returns a litefs.yml for a static primary serving HTTP on port.
func configYAML(dataDir, mntDir string, port int) string {
	return nodeYAML(dataDir, mntDir, port, "", nil)
}

// nodeYAML returns a litefs.yml for a node serving HTTP on port: the static
// primary when primaryURL is empty, otherwise a replica of the primary at
// primaryURL. A non-empty dbs limits a replica to those databases.
func nodeYAML(dataDir, mntDir string, port int, primaryURL string, dbs []string) string {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	candidate := primaryURL == ""
	if candidate {
		primaryURL = "http://" + addr
	}
	var only string
	if len(dbs) > 0 {
		quoted := make([]string, len(dbs))
		for i, name := range dbs {
			quoted[i] = strconv.Quote(name)
		}
		only = "  databases: [" + strings.Join(quoted, ", ") + "]\n"
	}
	return fmt.Sprintf(`# written by litefs-bench
exit-on-error: true
data:
  dir: %q
fuse:
  dir: %q
http:
  addr: %q
lease:
  type: static
  candidate: %t
  hostname: primary
  advertise-url: %q
%slog:
  timestamp: true
`, dataDir, mntDir, addr, candidate, primaryURL, only)
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// daemon is a running "litefs mount" subprocess in its own process group.
type daemon struct {
	cmd     *exec.Cmd
	mnt     string
	log     string
	url     string        // its HTTP API (set for a primary)
	done    chan struct{} // closed when the process has exited
	exitErr error         // the process's exit status; valid after done
}

// startDaemon writes the config of a static primary, starts litefs and
// waits until the mount is ready (<mnt>/.lag exists). On failure the daemon
// is already stopped.
func startDaemon(ctx context.Context, bin string, w *workDir, bare bool) (*daemon, error) {
	dirs := mountDirs{data: w.data, mnt: w.mnt, config: w.config, log: w.log}
	var env []string
	if bare {
		dirs = w.bare
		env = []string{"LITEFS_BENCH_PASSTHROUGH=1"}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	d, err := launch(bin, dirs, configYAML(dirs.data, dirs.mnt, port), env)
	if err != nil {
		return nil, err
	}
	d.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := d.waitReady(ctx); err != nil {
		return nil, errors.Join(err, d.stop())
	}
	return d, nil
}

// launch writes yaml to dirs.config and starts "litefs mount" on it with
// env added to the environment, without waiting for the mount.
func launch(bin string, dirs mountDirs, yaml string, env []string) (*daemon, error) {
	if err := os.WriteFile(dirs.config, []byte(yaml), 0o644); err != nil {
		return nil, fmt.Errorf("write config: %w", err)
	}
	logFile, err := os.Create(dirs.log)
	if err != nil {
		return nil, fmt.Errorf("create daemon log: %w", err)
	}
	defer logFile.Close() // the child keeps its own descriptor

	cmd := exec.Command(bin, "mount", "-config", dirs.config)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// Own process group: a Ctrl-C in the terminal reaches only the benchmark,
	// which then stops the daemon in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	d := &daemon{cmd: cmd, mnt: dirs.mnt, log: dirs.log, done: make(chan struct{})}
	go func() {
		d.exitErr = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// waitReady polls for <mnt>/.lag until it appears, the daemon exits, the
// timeout passes or ctx is canceled.
func (d *daemon) waitReady(ctx context.Context) error {
	lag := filepath.Join(d.mnt, ".lag")
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if _, err := os.Stat(lag); err == nil {
			return nil
		}
		select {
		case <-d.done:
			return fmt.Errorf("litefs exited before the mount was ready (%v)", d.exitErr)
		case <-deadline.C:
			return fmt.Errorf("litefs mount not ready: %s did not appear within %s", lag, readyTimeout)
		case <-ctx.Done():
			return fmt.Errorf("wait for litefs mount: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// check fails when the daemon has exited or its mount is gone: a litefs
// run must never silently fall through to the plain directory under mnt/.
func (d *daemon) check() error {
	select {
	case <-d.done:
		return fmt.Errorf("litefs exited during the benchmark (%v)", d.exitErr)
	default:
	}
	mounted, err := isMounted(d.mnt)
	if err != nil {
		return err
	}
	if !mounted {
		return fmt.Errorf("litefs is running but %s is no longer mounted", d.mnt)
	}
	return nil
}

// stop sends SIGTERM to the daemon's process group, SIGKILL after
// stopTimeout, and then makes sure the mount is gone. It is safe to call
// more than once.
func (d *daemon) stop() error {
	pgid := d.cmd.Process.Pid
	select {
	case <-d.done:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(stopTimeout):
			fmt.Fprintf(os.Stderr, "litefs did not stop within %s of SIGTERM: sending SIGKILL\n", stopTimeout)
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-d.done
		}
	}
	return ensureUnmounted(d.mnt)
}

// ensureUnmounted removes a mount left at dir: fusermount3 -u, then -uz.
func ensureUnmounted(dir string) error {
	mounted, err := isMounted(dir)
	if err != nil || !mounted {
		return err
	}
	out, err := exec.Command("fusermount3", "-u", dir).CombinedOutput()
	if err == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "fusermount3 -u %s: %v: %s; trying a lazy unmount\n", dir, err, strings.TrimSpace(string(out)))
	if out, err := exec.Command("fusermount3", "-uz", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("unmount %s: fusermount3 -uz: %w: %s", dir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// isMounted reports whether dir is a mount point, read from the mount table
// so that a dead FUSE mount neither hangs nor confuses the check.
func isMounted(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", dir, err)
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if mountPoint(sc.Text()) == abs {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read mount table: %w", err)
	}
	return false, nil
}

// mountPoint returns the mount point (fifth field) of a /proc/self/mountinfo
// line, with the kernel's octal escapes (\040 for a space, ...) decoded.
func mountPoint(line string) string {
	fields := strings.Fields(line)
	if len(fields) < 5 {
		return ""
	}
	return unescapeOctal(fields[4])
}

// unescapeOctal decodes backslash-octal escapes such as \040.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// logTail returns the last n lines of the daemon's log, for error reports.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readTXID reads <mnt>/<db>-pos ("TXID/CHECKSUM", both hex) and returns the
// TXID.
func readTXID(mnt, db string) (uint64, error) {
	path := filepath.Join(mnt, db+"-pos")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read position: %w", err)
	}
	txid, err := parsePos(string(data))
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return txid, nil
}

// parsePos parses the TXID out of a -pos file's text.
func parsePos(text string) (uint64, error) {
	text = strings.TrimSpace(text)
	txid, _, ok := strings.Cut(text, "/")
	if !ok || txid == "" {
		return 0, errors.New("want TXID/CHECKSUM, got " + strconv.Quote(text))
	}
	v, err := strconv.ParseUint(txid, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("bad TXID %q: %w", txid, err)
	}
	return v, nil
}
