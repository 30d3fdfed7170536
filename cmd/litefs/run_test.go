package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDaemon answers GET /info (and POST /promote) like a local daemon
// whose mount is a fake mount directory.
type fakeDaemon struct {
	url      string
	promotes atomic.Int64

	mu              sync.Mutex
	info            map[string]any
	promoteNotFound bool
}

// newFakeDaemon serves a node with role, mountDir and databases dbs.
func newFakeDaemon(t *testing.T, role, mountDir string, dbs ...string) *fakeDaemon {
	t.Helper()
	clearToken(t)
	d := &fakeDaemon{info: map[string]any{"nodeID": "00000000000000a1", "role": role, "candidate": true, "mountDir": mountDir}}
	m := map[string]any{}
	for _, name := range dbs {
		m[name] = map[string]string{"txid": "0000000000000001", "checksum": "8000000000000001"}
	}
	d.info["dbs"] = m
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		defer d.mu.Unlock()
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/info":
			json.NewEncoder(w).Encode(d.info)
		case r.Method == http.MethodPost && r.URL.Path == "/promote" && !d.promoteNotFound:
			d.promotes.Add(1)
			d.info["role"] = "primary"
		default:
			http.NotFound(w, r)
		}
	})
	d.url = srv.URL
	return d
}

// set changes one /info field (nil deletes it).
func (d *fakeDaemon) set(key string, v any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v == nil {
		delete(d.info, key)
	} else {
		d.info[key] = v
	}
}

// gatedCommand is a CMD for litefs run that creates its "started" file,
// waits (at most 10 s) for its "go" file, then exits with code.
type gatedCommand struct {
	started, goFile string
}

func newGatedCommand(t *testing.T) *gatedCommand {
	dir := t.TempDir()
	g := &gatedCommand{started: filepath.Join(dir, "started"), goFile: filepath.Join(dir, "go")}
	t.Cleanup(g.release) // never leave a command waiting
	return g
}

// argv returns the command line, exiting with code.
func (g *gatedCommand) argv(code string) []string {
	script := `touch "$1"; i=0; while [ ! -e "$2" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; exit ` + code
	return []string{"sh", "-c", script, "sh", g.started, g.goFile}
}

func (g *gatedCommand) release() { os.WriteFile(g.goFile, nil, 0o644) }

func (g *gatedCommand) hasStarted() bool {
	_, err := os.Stat(g.started)
	return err == nil
}

// runCLIAsync runs the command line in a goroutine.
func runCLIAsync(t *testing.T, args ...string) <-chan cliResult {
	ch := make(chan cliResult, 1)
	go func() { ch <- runCLI(t, args...) }()
	return ch
}

// awaitResult waits (bounded) for a command line started by runCLIAsync.
func awaitResult(t *testing.T, ch <-chan cliResult) cliResult {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(20 * time.Second):
		t.Fatal("litefs did not return within 20s")
	}
	return cliResult{}
}

func TestRun_HoldsChosenLocksWhileCommandRunsAndExitsWithItsCode(t *testing.T) {
	mount := fakeMount(t, "a", "b")
	d := newFakeDaemon(t, "replica", mount, "a", "b")
	tests := []struct {
		name  string
		flags []string
		held  map[string]bool
	}{
		{"every database without -db", []string{"-with-lock"}, map[string]bool{"a": true, "b": true}},
		{"one -db", []string{"-with-lock", "-db", "a"}, map[string]bool{"a": true, "b": false}},
		{"several -db", []string{"-db", "b", "-with-lock", "-db", "a"}, map[string]bool{"a": true, "b": true}},
		{"-with-halt-lock-on the database", []string{"-with-halt-lock-on", filepath.Join(mount, "b")}, map[string]bool{"a": false, "b": true}},
		{"-with-halt-lock-on its -lock file", []string{"-with-halt-lock-on", filepath.Join(mount, "a-lock")}, map[string]bool{"a": true, "b": false}},
		{"no lock flag", nil, map[string]bool{"a": false, "b": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGatedCommand(t)
			args := append(append([]string{"run", "-url", d.url}, tt.flags...), "--")
			ch := runCLIAsync(t, append(args, g.argv("7")...)...)
			waitUntil(t, 10*time.Second, "the command starts", g.hasStarted)
			assertHeld(t, mount, tt.held)
			g.release()
			res := awaitResult(t, ch)
			if res.code != 7 {
				t.Errorf("exit code %d, want the command's 7 (stderr %q)", res.code, res.stderr)
			}
			assertHeld(t, mount, map[string]bool{"a": false, "b": false})
		})
	}
}

func TestRun_PassesCommandOutputAndExitCode(t *testing.T) {
	d := newFakeDaemon(t, "primary", fakeMount(t, "a"), "a")
	tests := []struct {
		name       string
		cmd        []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"success", []string{"sh", "-c", "echo hello"}, 0, "hello\n", ""},
		{"failure code", []string{"sh", "-c", "echo partial; exit 3"}, 3, "partial\n", ""},
		{"killed by a signal", []string{"sh", "-c", "kill -KILL $$"}, 128 + 9, "", ""},
		{"command not found", []string{"/nonexistent/cmd"}, 1, "", "run: start /nonexistent/cmd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, append([]string{"run", "-with-lock", "-url", d.url, "--"}, tt.cmd...)...)
			if res.code != tt.wantCode || res.stdout != tt.wantStdout || !strings.Contains(res.stderr, tt.wantStderr) {
				t.Errorf("exit %d stdout %q stderr %q, want %d, %q and an error containing %q",
					res.code, res.stdout, res.stderr, tt.wantCode, tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

func TestRun_IfCandidateSkipsCommandOnNonCandidates(t *testing.T) {
	tests := []struct {
		name      string
		candidate any // nil: field absent
		flag      bool
		wantRun   bool
	}{
		{"non-candidate is skipped", false, true, false},
		{"candidate runs", true, true, true},
		{"unknown candidacy runs", nil, true, true},
		{"without -if-candidate a non-candidate runs", false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeDaemon(t, "replica", fakeMount(t, "a"), "a")
			d.set("candidate", tt.candidate)
			marker := filepath.Join(t.TempDir(), "ran")
			args := []string{"run", "-url", d.url, "-with-lock"}
			if tt.flag {
				args = append(args, "-if-candidate")
			}
			res := runCLI(t, append(args, "--", "touch", marker)...)
			_, err := os.Stat(marker)
			if res.code != 0 || (err == nil) != tt.wantRun {
				t.Errorf("exit %d (stderr %q), command ran: %v, want exit 0 and ran: %v", res.code, res.stderr, err == nil, tt.wantRun)
			}
		})
	}
}

func TestRun_PromoteMakesNodePrimaryFirstOrExplainsMissingSupport(t *testing.T) {
	tests := []struct {
		name         string
		role         string
		notFound     bool
		wantCode     int
		wantPromotes int64
		wantErr      string
	}{
		{"replica is promoted", "replica", false, 0, 1, ""},
		{"primary needs nothing", "primary", false, 0, 0, ""},
		{"daemon without /promote", "replica", true, 1, 0, "this daemon does not support -promote yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeDaemon(t, tt.role, fakeMount(t, "a"), "a")
			d.mu.Lock()
			d.promoteNotFound = tt.notFound
			d.mu.Unlock()
			marker := filepath.Join(t.TempDir(), "ran")
			res := runCLI(t, "run", "-url", d.url, "-promote", "--", "touch", marker)
			_, err := os.Stat(marker)
			if res.code != tt.wantCode || d.promotes.Load() != tt.wantPromotes || !strings.Contains(res.stderr, tt.wantErr) {
				t.Errorf("exit %d, %d POST /promote, stderr %q; want %d, %d, %q", res.code, d.promotes.Load(), res.stderr, tt.wantCode, tt.wantPromotes, tt.wantErr)
			}
			if (err == nil) != (tt.wantCode == 0) {
				t.Errorf("command ran: %v, want %v", err == nil, tt.wantCode == 0)
			}
		})
	}
}

func TestRun_UsageErrorsExitTwo(t *testing.T) {
	clearToken(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", []string{"run", "-with-lock"}, "run: missing command"},
		{"nothing after --", []string{"run", "-with-lock", "--"}, "run: missing command"},
		{"command without --", []string{"run", "-with-lock", "echo", "hi"}, "put -- before the command"},
		{"-db without -with-lock", []string{"run", "-db", "a", "--", "true"}, "-db names a database to lock: add -with-lock"},
		{"bad -db name", []string{"run", "-with-lock", "-db", "x/y", "--", "true"}, `bad database name "x/y"`},
		{"unknown flag", []string{"run", "-with-lokc", "--", "true"}, "-with-lokc"},
		{"bad -url", []string{"run", "-url", "localhost:1", "--", "true"}, "bad -url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := runCLI(t, tt.args...)
			if res.code != 2 || !strings.Contains(res.stderr, tt.want) {
				t.Errorf("exit %d stderr %q, want exit 2 and %q", res.code, res.stderr, tt.want)
			}
		})
	}
}

func TestRun_LockProblemsExitOneWithoutRunningCommand(t *testing.T) {
	mount := fakeMount(t, "a", "b")
	tests := []struct {
		name     string
		mountDir string
		dbs      []string
		flags    []string
		want     string
	}{
		{"daemon without mountDir", "", []string{"a"}, []string{"-with-lock"}, "does not report its mount directory"},
		{"node without databases", mount, nil, []string{"-with-lock"}, "the node has no databases to lock"},
		{"unknown -db", mount, []string{"a", "b"}, []string{"-with-lock", "-db", "zz"}, `no database "zz" on this node (it has: a, b)`},
		{"database without lock file", mount, []string{"a", "c"}, []string{"-with-lock"}, "no database c in mount " + mount},
		{"halt path outside the mount", mount, []string{"a"}, []string{"-with-halt-lock-on", "/tmp/a"}, "/tmp/a is not in the mount directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newFakeDaemon(t, "replica", tt.mountDir, tt.dbs...)
			marker := filepath.Join(t.TempDir(), "ran")
			res := runCLI(t, append(append([]string{"run", "-url", d.url}, tt.flags...), "--", "touch", marker)...)
			if res.code != 1 || !strings.Contains(res.stderr, tt.want) {
				t.Errorf("exit %d stderr %q, want exit 1 and %q", res.code, res.stderr, tt.want)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("the command ran")
			}
			assertHeld(t, mount, map[string]bool{"a": false, "b": false})
		})
	}
}

func TestRunLockUnlock_HelpPrintsUsageAndExitsZero(t *testing.T) {
	tests := []struct{ cmd, want string }{
		{"run", runSynopsis},
		{"lock", lockSynopsis},
		{"unlock", unlockSynopsis},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			res := runCLI(t, tt.cmd, "-h")
			if res.code != 0 || !strings.Contains(res.stdout, tt.want) || !strings.Contains(res.stdout, "-url") {
				t.Errorf("exit %d stdout %q, want 0 and the synopsis %q", res.code, res.stdout, tt.want)
			}
		})
	}
	if res := runCLI(t, "-h"); !strings.Contains(res.stdout, "litefs run ") || !strings.Contains(res.stdout, "litefs unlock") {
		t.Errorf("the main usage does not list run, lock and unlock:\n%s", res.stdout)
	}
}
