// Package tests holds the end-to-end tests of the litefs binary: real FUSE
// mounts, real SQLite, one or more nodes talking HTTP on 127.0.0.1.
//
// The harness lives in harness*_test.go. TestMain prepares a work directory
// and checks that FUSE is usable; the first StartNode builds the daemon (with
// -race); StartNode runs one daemon with its own data directory, mount point
// and port, and registers a cleanup that always ends
// with the process gone and the mount removed, even when the test fails.
// If the test binary is interrupted or about to hit its -timeout, every
// daemon is killed and every mount is removed before the process dies.
package tests

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dirPrefix starts the name of the temp directory holding every node of one
// test binary; the stale-mount sweep only looks at mounts under such names.
const dirPrefix = "litefs-e2e-"

var (
	// workRoot is the directory under which node directories are created.
	workRoot string

	// fuseErr is non-nil when FUSE is unusable; RequireFUSE reports it.
	fuseErr error

	// buildOnce guards the daemon build; litefsBin and buildErr are its result.
	buildOnce sync.Once
	litefsBin string
	buildErr  error

	// nodeSeq numbers nodes that were given no name.
	nodeSeq atomic.Int64

	// live holds every node that may have a process or a mount, for the
	// emergency cleanup on interrupt or timeout.
	liveMu sync.Mutex
	live   = map[*Node]struct{}{}
)

// TestMain prepares the shared work directory, checks FUSE, installs the
// emergency cleanup and runs the tests.
func TestMain(m *testing.M) {
	if path := os.Getenv(holdHaltEnv); path != "" {
		os.Exit(holdHaltChild(path)) // a HALT-holding child process, see halt_faults_test.go
	}
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	workRoot, err = os.MkdirTemp("", dirPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests: cannot create work directory:", err)
		return 1
	}
	defer func() {
		if cleanupAll("") {
			os.RemoveAll(workRoot)
		}
	}()

	fuseErr = checkFUSE()
	if fuseErr == nil {
		sweepDeadMounts()
	}
	stop := installWatchdogs()
	defer stop()
	return m.Run()
}

// checkFUSE reports why FUSE mounts cannot work here, or nil.
func checkFUSE() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("FUSE unavailable: cannot open /dev/fuse: %v "+
			"(in a container, run with --device /dev/fuse --cap-add SYS_ADMIN)", err)
	}
	f.Close()
	if _, err := exec.LookPath("fusermount3"); err != nil {
		return errors.New("FUSE unavailable: fusermount3 not found in PATH " +
			"(install the Debian package fuse3, e.g. with `make deps`)")
	}
	return nil
}

// RequireFUSE stops the test when FUSE is unusable: it fails when the
// environment variable CI is "true" (a broken CI machine must not pass), and
// skips otherwise.
func RequireFUSE(t testing.TB) {
	t.Helper()
	if fuseErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: tests that need FUSE fail instead of skipping)", fuseErr)
	}
	t.Skip(fuseErr)
}

// daemonPath returns the race-instrumented litefs binary, building it on
// first use so tests that need no daemon do not pay for the build. The
// environment variable LITEFS_TEST_BIN names a prebuilt binary to use instead.
func daemonPath(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("LITEFS_TEST_BIN"); bin != "" {
			litefsBin, buildErr = filepath.Abs(bin)
			return
		}
		bin := filepath.Join(workRoot, "bin", "litefs")
		start := time.Now()
		cmd := exec.Command("go", "build", "-race", "-o", bin, "../cmd/litefs")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build -race ../cmd/litefs: %v\n%s", err, out)
			return
		}
		litefsBin = bin
		fmt.Fprintf(os.Stderr, "tests: built %s in %s\n", bin, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return litefsBin
}

// installWatchdogs kills every daemon and removes every mount when the test
// binary gets SIGINT/SIGTERM or is about to reach its -test.timeout (whose
// panic would skip every t.Cleanup). The returned function uninstalls them.
func installWatchdogs() func() {
	var timer *time.Timer
	if d := testTimeout(); d > 0 {
		margin := 10 * time.Second
		if d < 4*margin {
			margin = d / 4
		}
		timer = time.AfterFunc(d-margin, func() {
			if cleanupAll("test binary is about to reach its -timeout") {
				os.RemoveAll(workRoot)
			}
		})
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	quit := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			if cleanupAll("received " + sig.String()) {
				os.RemoveAll(workRoot)
			}
			os.Exit(1)
		case <-quit:
		}
	}()
	return func() {
		if timer != nil {
			timer.Stop()
		}
		signal.Stop(sigs)
		close(quit)
	}
}

// testTimeout returns the value of -test.timeout, or 0.
func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return 0
	}
	d, _ := g.Get().(time.Duration)
	return d
}

// cleanupAll kills the processes and removes the mounts of every live node.
// A non-empty reason is printed when there was something to clean. It
// reports whether no mount is left, i.e. whether workRoot may be removed.
func cleanupAll(reason string) bool {
	liveMu.Lock()
	nodes := make([]*Node, 0, len(live))
	for n := range live {
		nodes = append(nodes, n)
	}
	liveMu.Unlock()
	if len(nodes) > 0 && reason != "" {
		fmt.Fprintf(os.Stderr, "tests: %s: killing %d litefs node(s) and removing their mounts\n", reason, len(nodes))
	}
	ok := true
	for _, n := range nodes {
		if err := n.killGroup(); err != nil {
			fmt.Fprintln(os.Stderr, "tests:", err)
		}
		if err := unmount(n.MountDir); err != nil {
			fmt.Fprintln(os.Stderr, "tests:", err)
			ok = false
		}
	}
	return ok
}

// sweepDeadMounts lazily unmounts FUSE mounts left under a previous run's
// work directory whose daemon is gone (ENOTCONN). Mounts with a live daemon,
// possibly another test run in progress, are left alone.
func sweepDeadMounts() {
	entries, err := readMounts()
	if err != nil {
		return
	}
	tmp := filepath.Clean(os.TempDir()) + "/"
	for _, e := range entries {
		if !strings.HasPrefix(e.fsType, "fuse") || !strings.HasPrefix(e.point, tmp) ||
			!strings.Contains(e.point, "/"+dirPrefix) {
			continue
		}
		if _, err := statTimeout(e.point, 2*time.Second); errors.Is(err, syscall.ENOTCONN) {
			fmt.Fprintf(os.Stderr, "tests: removing stale mount %s from an earlier run\n", e.point)
			_, _ = runBounded(10*time.Second, "fusermount3", "-uz", e.point)
		}
	}
}

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	point  string
	fsType string
}

// readMounts parses /proc/self/mountinfo. It never touches the mounted file
// systems, so it cannot hang on a stuck FUSE daemon.
func readMounts() ([]mountEntry, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var entries []mountEntry
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields, postFields := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(postFields) < 1 {
			continue
		}
		entries = append(entries, mountEntry{point: unescapeMountPath(fields[4]), fsType: postFields[0]})
	}
	return entries, nil
}

// unescapeMountPath decodes the octal escapes (\040 and friends) the kernel
// uses in /proc/self/mountinfo.
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// IsMounted reports whether dir is currently a mount point, according to the
// mount table (so a dead FUSE mount counts as mounted).
func IsMounted(dir string) bool {
	entries, err := readMounts()
	if err != nil {
		return false
	}
	dir = filepath.Clean(dir)
	for _, e := range entries {
		if e.point == dir {
			return true
		}
	}
	return false
}

// unmount removes every mount stacked on dir: `fusermount3 -u`, falling back
// to a lazy `fusermount3 -uz` when the mount is busy. It returns an error only
// if dir is still mounted afterwards.
func unmount(dir string) error {
	var msgs []string
	for i := 0; i < 4 && IsMounted(dir); i++ {
		out, err := runBounded(10*time.Second, "fusermount3", "-u", dir)
		if err == nil {
			continue
		}
		msgs = append(msgs, fmt.Sprintf("fusermount3 -u: %v: %s", err, strings.TrimSpace(out)))
		out, err = runBounded(10*time.Second, "fusermount3", "-uz", dir)
		if err != nil {
			msgs = append(msgs, fmt.Sprintf("fusermount3 -uz: %v: %s", err, strings.TrimSpace(out)))
		}
	}
	if IsMounted(dir) {
		return fmt.Errorf("cannot unmount %s: %s", dir, strings.Join(msgs, "; "))
	}
	return nil
}

// runBounded runs a command with a time limit and returns its combined output.
func runBounded(limit time.Duration, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("%s timed out after %s", name, limit)
	}
}

// statTimeout stats path but gives up after limit: a stat inside a mount whose
// daemon is stuck would otherwise block the test forever. A stat that timed
// out keeps its goroutine until the daemon is killed.
func statTimeout(path string, limit time.Duration) (os.FileInfo, error) {
	type result struct {
		fi  os.FileInfo
		err error
	}
	ch := make(chan result, 1)
	go func() {
		fi, err := os.Stat(path)
		ch <- result{fi, err}
	}()
	select {
	case r := <-ch:
		return r.fi, r.err
	case <-time.After(limit):
		return nil, fmt.Errorf("stat %s: no answer within %s", path, limit)
	}
}

// ReadFileTimeout reads a whole file but gives up after limit, so a stuck
// daemon turns into a test failure instead of a hung test binary.
func ReadFileTimeout(path string, limit time.Duration) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		data, err := os.ReadFile(path)
		ch <- result{data, err}
	}()
	select {
	case r := <-ch:
		return r.data, r.err
	case <-time.After(limit):
		return nil, fmt.Errorf("read %s: no answer within %s", path, limit)
	}
}

// sanitize turns a test name into a short string safe for a file name.
func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
	if len(s) > 40 {
		s = s[:40]
	}
	return s
}
