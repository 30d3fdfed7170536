package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testAsCLIEnv makes the test binary behave as the litefs command: litefs
// lock must run as a child of a shell and re-executes itself as the lock
// holder, so these tests run the test binary itself as "litefs".
const testAsCLIEnv = "LITEFS_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(testAsCLIEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cliEnv is an environment in which "litefs" (on PATH) is the test binary
// acting as the command, with its own directory for lock state files.
type cliEnv struct {
	env      []string
	stateDir string // where lock state files go
	work     string // scratch directory for scripts
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(exe, filepath.Join(bin, "litefs")); err != nil {
		t.Fatal(err)
	}
	xdg, raceLogs := t.TempDir(), t.TempDir()
	t.Cleanup(func() { // the holder's stderr is /dev/null: race reports go to files
		logs, _ := filepath.Glob(filepath.Join(raceLogs, "race*"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Errorf("data race in a litefs subprocess:\n%s", b)
		}
	})
	e := &cliEnv{stateDir: filepath.Join(xdg, "litefs"), work: t.TempDir()}
	t.Cleanup(func() { // a failed test must not leave a holder behind
		for _, path := range e.stateFiles(t) {
			if st, err := readLiveLockState(path); err == nil && st != nil {
				syscall.Kill(st.Holder, syscall.SIGKILL)
			}
		}
	})
	var env []string
	for _, kv := range os.Environ() {
		switch strings.SplitN(kv, "=", 2)[0] {
		case "PATH", "XDG_RUNTIME_DIR", "GORACE", authTokenEnv:
		default:
			env = append(env, kv)
		}
	}
	env = append(env, testAsCLIEnv+"=1", "XDG_RUNTIME_DIR="+xdg, "PATH="+bin+":"+os.Getenv("PATH"),
		// -race binaries otherwise sleep 1 s at exit.
		"GORACE=atexit_sleep_ms=0 log_path="+filepath.Join(raceLogs, "race")+" "+os.Getenv("GORACE"))
	e.env = env
	return e
}

// script starts `sh -c script` (bounded by 30 s) with the CLI environment.
func (e *cliEnv) script(t *testing.T, script string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "sh", "-c", script)
	cmd.Env, cmd.Dir = e.env, e.work
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &out
}

// exists reports whether file name exists in the scratch directory.
func (e *cliEnv) exists(name string) bool {
	_, err := os.Stat(filepath.Join(e.work, name))
	return err == nil
}

// touch creates file name in the scratch directory.
func (e *cliEnv) touch(t *testing.T, name string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.work, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// stateFiles lists the lock state files.
func (e *cliEnv) stateFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(e.stateDir, "lock-*.pid"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// waitFile is a shell function waiting (at most 10 s) for a file.
const waitFile = `wait_file() { i=0; while [ ! -e "$1" ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done; }; `

func TestLock_ReturnsWhileHolderKeepsLockUntilUnlock(t *testing.T) {
	mount := fakeMount(t, "a", "b")
	d := newFakeDaemon(t, "replica", mount, "a", "b")
	e := newCLIEnv(t)
	cmd, out := e.script(t, waitFile+fmt.Sprintf(`litefs lock -url %s -db a || exit 10
touch locked; wait_file go
litefs unlock || exit 11
touch unlocked; wait_file done`, d.url))
	waitUntil(t, 20*time.Second, "litefs lock returns", func() bool { return e.exists("locked") })
	assertHeld(t, mount, map[string]bool{"a": true, "b": false})
	if n := len(e.stateFiles(t)); n != 1 {
		t.Errorf("%d state files while locked, want 1", n)
	}
	e.touch(t, "go")
	waitUntil(t, 20*time.Second, "litefs unlock returns", func() bool { return e.exists("unlocked") })
	assertHeld(t, mount, map[string]bool{"a": false, "b": false}) // unlock waits for the release
	if files := e.stateFiles(t); len(files) != 0 {
		t.Errorf("state files left after unlock: %q", files)
	}
	e.touch(t, "done")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "holding the HALT lock on a until litefs unlock") {
		t.Errorf("lock did not say what it holds:\n%s", out)
	}
}

func TestLock_ReleasedWhenCallingShellExits(t *testing.T) {
	mount := fakeMount(t, "a", "b")
	d := newFakeDaemon(t, "replica", mount, "a", "b")
	e := newCLIEnv(t)
	cmd, out := e.script(t, fmt.Sprintf(`litefs lock -url %s && touch locked; sleep 0.5`, d.url))
	waitUntil(t, 20*time.Second, "litefs lock returns", func() bool { return e.exists("locked") })
	assertHeld(t, mount, map[string]bool{"a": true, "b": true})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	waitUntil(t, 5*time.Second, "the holder releases after the shell exits", func() bool {
		return !haltHeld(t, mount, "a") && !haltHeld(t, mount, "b")
	})
	waitUntil(t, 5*time.Second, "the holder removes its state file", func() bool { return len(e.stateFiles(t)) == 0 })
}

func TestLock_TwiceFromSameShellFailsClearly(t *testing.T) {
	mount := fakeMount(t, "a")
	d := newFakeDaemon(t, "replica", mount, "a")
	e := newCLIEnv(t)
	cmd, out := e.script(t, fmt.Sprintf(`litefs lock -url %[1]s || exit 10
litefs lock -url %[1]s; echo "second=$?"
litefs unlock || exit 11`, d.url))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	for _, want := range []string{"second=1", "already holds the HALT lock on a through litefs lock", "run litefs unlock first"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
	assertHeld(t, mount, map[string]bool{"a": false})
}

func TestUnlock_WithoutLockIsNoOp(t *testing.T) {
	e := newCLIEnv(t)
	cmd, out := e.script(t, `litefs unlock; echo "code=$?"`)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "no HALT lock held by litefs lock for this shell") || !strings.Contains(out.String(), "code=0") {
		t.Errorf("want a no-op message and exit 0:\n%s", out)
	}
}

func TestLock_ReportsHolderFailure(t *testing.T) {
	mount := fakeMount(t, "a") // "c" is known to the daemon but has no lock file
	d := newFakeDaemon(t, "replica", mount, "a", "c")
	e := newCLIEnv(t)
	cmd, out := e.script(t, fmt.Sprintf(`litefs lock -url %s; echo "code=$?"`, d.url))
	if err := cmd.Wait(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "no database c in mount "+mount) || !strings.Contains(out.String(), "code=1") {
		t.Errorf("want the holder's error and exit 1:\n%s", out)
	}
	assertHeld(t, mount, map[string]bool{"a": false})
	if files := e.stateFiles(t); len(files) != 0 {
		t.Errorf("state files left after a failed lock: %q", files)
	}
}

func TestLock_InterruptWhileWaitingStopsHolder(t *testing.T) {
	mount := fakeMount(t, "a")
	d := newFakeDaemon(t, "replica", mount, "a")
	releaseA := holdHaltExternally(t, mount, "a")
	e := newCLIEnv(t)
	cmd, out := e.script(t, fmt.Sprintf(`litefs lock -url %s & echo $! > lockpid; wait $!; echo "code=$?"`, d.url))
	waitUntil(t, 20*time.Second, "a holder waits", func() bool { return len(e.stateFiles(t)) == 1 })
	b, err := os.ReadFile(filepath.Join(e.work, "lockpid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	fmt.Sscan(string(b), &pid)
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "interrupted by terminated while waiting for the HALT lock") || !strings.Contains(out.String(), "code=1") {
		t.Errorf("want an interrupted error and exit 1:\n%s", out)
	}
	waitUntil(t, 5*time.Second, "the holder goes away", func() bool { return len(e.stateFiles(t)) == 0 })
	releaseA()
	time.Sleep(100 * time.Millisecond)
	assertHeld(t, mount, map[string]bool{"a": false})
}

func TestRun_ForwardsSignalsToCommand(t *testing.T) {
	mount := fakeMount(t, "a")
	d := newFakeDaemon(t, "replica", mount, "a")
	e := newCLIEnv(t)
	cmd, out := e.script(t, fmt.Sprintf(`exec litefs run -url %s -with-lock -- sh -c 'trap "exit 42" TERM; touch started; i=0; while [ $i -lt 1000 ]; do sleep 0.01; i=$((i+1)); done'`, d.url))
	waitUntil(t, 20*time.Second, "the command starts", func() bool { return e.exists("started") })
	assertHeld(t, mount, map[string]bool{"a": true})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil { // exec: the shell is litefs run now
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 42 {
		t.Fatalf("litefs run: %v, want exit status 42 from the command's TERM trap\n%s", err, out)
	}
	assertHeld(t, mount, map[string]bool{"a": false})
}

func TestLock_UsageErrorsExitTwo(t *testing.T) {
	clearToken(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"lock with argument", []string{"lock", "a"}, `lock: unexpected argument "a"`},
		{"lock bad -db", []string{"lock", "-db", ".."}, `bad database name ".."`},
		{"lock bad -url", []string{"lock", "-url", "ftp://x"}, "bad -url"},
		{"unlock with argument", []string{"unlock", "now"}, `unlock: unexpected argument "now"`},
		{"unlock unknown flag", []string{"unlock", "-force"}, "-force"},
		{"holder run by hand", []string{holdLockCommand}, "internal to litefs lock"},
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

func TestWatchProcess_NoticesExitWithAndWithoutPidfd(t *testing.T) {
	for _, usePidfd := range []bool{true, false} {
		t.Run(fmt.Sprintf("pidfd=%v", usePidfd), func(t *testing.T) {
			cmd := exec.Command("sleep", "0.3")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			pid := cmd.Process.Pid
			start, err := procStartTime(pid)
			if err != nil {
				t.Fatal(err)
			}
			pidfd := -1
			if usePidfd {
				if pidfd, err = unix.PidfdOpen(pid, 0); err != nil {
					t.Skipf("no pidfd: %v", err)
				}
				defer unix.Close(pidfd)
			}
			if !processAlive(pid, start) || processAlive(pid, start+1) {
				t.Error("processAlive must match the pid and its start time")
			}
			select {
			case <-watchProcess(pid, start, pidfd):
			case <-time.After(10 * time.Second):
				t.Fatal("the exit of the process was not noticed within 10s")
			}
			if processAlive(pid, start) { // a zombie until Wait: exited all the same
				t.Error("processAlive is true after the process exited")
			}
		})
	}
}

func TestUsableStateDir_RefusesUnsafeDirectories(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	link := filepath.Join(base, "link")
	os.Symlink(t.TempDir(), link)
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	tests := []struct {
		name, dir, want string
	}{
		{"new directory", filepath.Join(base, "new"), ""},
		{"writable by others", open, "writable by other users"},
		{"symbolic link", link, "is not a directory"},
		{"regular file", file, "is not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := usableStateDir(tt.dir)
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("usableStateDir(%s) = %v, want an error containing %q", tt.dir, err, tt.want)
			}
		})
	}
}
