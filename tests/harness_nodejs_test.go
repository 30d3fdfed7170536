package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Node.js and the npm package litefs-js, for tests of what a Node
// application sees in the mount. litefs-js is installed from the npm
// registry at test time (npm's own cache makes reruns fast), once per test
// binary, into the work directory.

const (
	// litefsJSSpec is the npm package the Node tests install.
	litefsJSSpec = "litefs-js@2"
	// npmInstallTimeout bounds `npm install`.
	npmInstallTimeout = 3 * time.Minute
	// nodeScriptTimeout bounds one run of a Node script.
	nodeScriptTimeout = 60 * time.Second
)

var (
	litefsJSOnce sync.Once
	litefsJSDir  string // the --prefix of the install
	litefsJSVer  string // the installed version
	litefsJSErr  error
)

// requireOrSkip stops the test for a missing part: it fails when CI is
// "true" and skips otherwise.
func requireOrSkip(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v (CI=true: a missing part fails the test)", err)
	}
	t.Skip(err)
}

// requireLitefsJS returns the path of litefs-js's entry module, installing
// the package on first use. Without node, npm or a successful install the
// test fails under CI=true and is skipped otherwise.
func requireLitefsJS(t testing.TB) string {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			requireOrSkip(t, fmt.Errorf("%s not found in PATH (Debian packages nodejs and npm; `make deps` installs them)", tool))
		}
	}
	litefsJSOnce.Do(func() { litefsJSDir, litefsJSVer, litefsJSErr = installLitefsJS() })
	if litefsJSErr != nil {
		requireOrSkip(t, litefsJSErr)
	}
	t.Logf("litefs-js %s from %s", litefsJSVer, litefsJSDir)
	return filepath.Join(litefsJSDir, "node_modules", "litefs-js", "dist", "index.js")
}

// installLitefsJS runs `npm install --prefix DIR litefs-js@2` and returns
// DIR and the installed version.
func installLitefsJS() (string, string, error) {
	dir := filepath.Join(workRoot, "litefs-js")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", dir, "--no-audit", "--no-fund", litefsJSSpec)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("npm install %s: %v\n%s", litefsJSSpec, err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "node_modules", "litefs-js", "package.json"))
	if err != nil {
		return "", "", fmt.Errorf("npm install %s: %w", litefsJSSpec, err)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(data, &pkg); err != nil {
		return "", "", fmt.Errorf("litefs-js package.json: %w", err)
	}
	if !strings.HasPrefix(pkg.Version, "2.") {
		return "", "", fmt.Errorf("npm installed litefs-js %s, want 2.x", pkg.Version)
	}
	fmt.Fprintf(os.Stderr, "tests: installed litefs-js %s in %s\n", pkg.Version, time.Since(start).Round(time.Millisecond))
	return dir, pkg.Version, nil
}

// nodeRun is a running Node script: it prints progress lines, then one
// JSON object as its last line.
type nodeRun struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	lines  chan string
	stderr strings.Builder
	done   chan error
}

// startNodeScript writes script to a temp file and runs it with node,
// with env added to the environment and args after the script's path.
func startNodeScript(t *testing.T, script string, env []string, args ...string) *nodeRun {
	t.Helper()
	path := filepath.Join(t.TempDir(), "probe.mjs")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), nodeScriptTimeout)
	r := &nodeRun{cancel: cancel, lines: make(chan string, 16), done: make(chan error, 2)}
	r.cmd = exec.CommandContext(ctx, "node", append([]string{path}, args...)...)
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stderr = &r.stderr
	r.cmd.WaitDelay = 5 * time.Second
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("node %s: %v", path, err)
	}
	t.Cleanup(func() { r.cancel(); <-r.done })
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		close(r.lines)
		err := r.cmd.Wait()
		r.done <- err
		r.done <- err // one for the caller, one for the cleanup
	}()
	return r
}

// next returns the script's next output line, failing the test when the
// script ends first or stays silent past its time limit.
func (r *nodeRun) next(t *testing.T) string {
	t.Helper()
	line, ok := <-r.lines
	if !ok {
		err := <-r.done
		t.Fatalf("node script ended (%v) without the expected output; stderr:\n%s", err, r.stderr.String())
	}
	return line
}

// result reads the script's final JSON line into v and waits for it to exit.
func (r *nodeRun) result(t *testing.T, v any) {
	t.Helper()
	line := r.next(t)
	if err := <-r.done; err != nil {
		t.Fatalf("node script: %v; stderr:\n%s", err, r.stderr.String())
	}
	if err := json.Unmarshal([]byte(line), v); err != nil {
		t.Fatalf("node script output %q: %v", line, err)
	}
	if s := r.stderr.String(); s != "" {
		t.Logf("node script stderr:\n%s", s)
	}
}
