package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// OFD locks work on any local file, so a temporary directory holding
// NAME-lock files stands in for the mount in these tests.

// fakeMount returns a directory with an empty NAME-lock file per name.
func fakeMount(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		if err := os.WriteFile(filepath.Join(dir, name+"-lock"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// haltHeld reports whether someone holds the HALT byte of name in dir, as
// F_OFD_GETLK sees it from a new open file description.
func haltHeld(t *testing.T, dir, name string) bool {
	t.Helper()
	fd, err := unix.Open(filepath.Join(dir, name+"-lock"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	lk := haltFlock(unix.F_WRLCK)
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, lk); err != nil {
		t.Fatal(err)
	}
	return lk.Type != unix.F_UNLCK
}

// holdHaltExternally takes the HALT byte of name in dir through its own
// descriptor, as another application would; the returned function (also
// run at cleanup) releases it.
func holdHaltExternally(t *testing.T, dir, name string) (release func()) {
	t.Helper()
	fd, err := unix.Open(filepath.Join(dir, name+"-lock"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, haltFlock(unix.F_WRLCK)); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			unix.Close(fd)
		}
	}
	t.Cleanup(release)
	return release
}

// waitUntil polls cond every 10 ms and fails the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockResult is what one holdHaltLocks call returned.
type lockResult struct {
	release func() error
	err     error
}

// holdAsync runs holdHaltLocks in a goroutine.
func holdAsync(ctx context.Context, dir string, names ...string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		release, err := holdHaltLocks(ctx, dir, names)
		ch <- lockResult{release, err}
	}()
	return ch
}

// assertHeld checks which of the databases are locked.
func assertHeld(t *testing.T, dir string, want map[string]bool) {
	t.Helper()
	for name, held := range want {
		if got := haltHeld(t, dir, name); got != held {
			t.Errorf("HALT on %s held = %v, want %v", name, got, held)
		}
	}
}

func TestHoldHaltLocks_TakesLocksInSortedOrder(t *testing.T) {
	dir := fakeMount(t, "a", "b", "c")
	releaseB := holdHaltExternally(t, dir, "b")
	ch := holdAsync(context.Background(), dir, "c", "a", "b", "a")
	// Sorted order: a is taken, then the wait on b blocks, and c (last) is
	// not taken yet.
	waitUntil(t, 5*time.Second, "a is locked", func() bool { return haltHeld(t, dir, "a") })
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-ch:
		t.Fatalf("holdHaltLocks returned (%v) while b was held by someone else", r.err)
	default:
	}
	assertHeld(t, dir, map[string]bool{"a": true, "c": false})
	releaseB()
	var r lockResult
	select {
	case r = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("holdHaltLocks did not return after b was released")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	assertHeld(t, dir, map[string]bool{"a": true, "b": true, "c": true})
	if err := r.release(); err != nil {
		t.Fatal(err)
	}
	assertHeld(t, dir, map[string]bool{"a": false, "b": false, "c": false})
	if err := r.release(); err != nil {
		t.Errorf("second release: %v, want nil (release is idempotent)", err)
	}
}

func TestHoldHaltLocks_SecondHolderWaitsUntilFirstReleases(t *testing.T) {
	dir := fakeMount(t, "a")
	release1, err := holdHaltLocks(context.Background(), dir, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	ch := holdAsync(context.Background(), dir, "a")
	select {
	case r := <-ch:
		t.Fatalf("second holder returned (%v) while the first held the lock", r.err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := release1(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatal(r.err)
		}
		assertHeld(t, dir, map[string]bool{"a": true})
		if err := r.release(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second holder did not get the lock after the first released it")
	}
	assertHeld(t, dir, map[string]bool{"a": false})
}

func TestHoldHaltLocks_ReleasesTakenLocksOnFailure(t *testing.T) {
	dir := fakeMount(t, "a", "b")
	tests := []struct {
		name    string
		mount   string
		names   []string
		want    string
		wantErr error
	}{
		{"missing database after taken ones", dir, []string{"b", "zz", "a"}, "no database zz in mount " + dir, unix.ENOENT},
		{"missing mount directory", filepath.Join(dir, "nope"), []string{"a"}, "is not available (is litefs mount running?)", unix.ENOENT},
		{"mount is a file", filepath.Join(dir, "a-lock"), []string{"a"}, "is not available", unix.ENOTDIR},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release, err := holdHaltLocks(context.Background(), tt.mount, tt.names)
			if err == nil {
				release()
				t.Fatal("holdHaltLocks succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q, want it to contain %q and wrap %v", err, tt.want, tt.wantErr)
			}
			assertHeld(t, dir, map[string]bool{"a": false, "b": false})
		})
	}
}

func TestHoldHaltLocks_RejectsBadNames(t *testing.T) {
	dir := fakeMount(t, "a")
	tests := []struct {
		name  string
		names []string
		want  string
	}{
		{"no names", nil, "no database named"},
		{"empty name", []string{"a", ""}, `bad database name ""`},
		{"slash", []string{"a", "x/y"}, `bad database name "x/y"`},
		{"dot dot", []string{".."}, `bad database name ".."`},
		{"NUL", []string{"a\x00b"}, "bad database name"},
		{"too long", []string{strings.Repeat("n", 300)}, "bad database name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release, err := holdHaltLocks(context.Background(), dir, tt.names)
			if err == nil {
				release()
				t.Fatal("holdHaltLocks succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			assertHeld(t, dir, map[string]bool{"a": false})
		})
	}
}

func TestHoldHaltLocks_ContextCancelStopsWaiting(t *testing.T) {
	dir := fakeMount(t, "a", "b")
	releaseB := holdHaltExternally(t, dir, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	release, err := holdHaltLocks(ctx, dir, []string{"a", "b"})
	if err == nil {
		release()
		t.Fatal("holdHaltLocks succeeded while b was held, want a context error")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "stopped waiting for the HALT lock on b") {
		t.Errorf("error %q, want it to name b and wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("returned after %s, want soon after the 200ms deadline", d)
	}
	assertHeld(t, dir, map[string]bool{"a": false, "b": true})
	// The abandoned wait on b may still be granted; it must let go at once.
	releaseB()
	waitUntil(t, 5*time.Second, "the abandoned request releases b", func() bool { return !haltHeld(t, dir, "b") })

	// An already cancelled context takes nothing.
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := holdHaltLocks(done, dir, []string{"a"}); !errors.Is(err, context.Canceled) {
		t.Errorf("with a cancelled context: error %v, want context.Canceled", err)
	}
	assertHeld(t, dir, map[string]bool{"a": false})
}

func TestHaltLockError_NamesDatabaseAndErrnoMeaning(t *testing.T) {
	tests := []struct {
		errno unix.Errno
		want  string
	}{
		{unix.EAGAIN, "HALT lock on db1 is busy or timed out, retry later"},
		{unix.EINTR, "waiting for the HALT lock on db1 was interrupted (EINTR)"},
		{unix.ENOLCK, "HALT lock on db1 refused (ENOLCK)"},
		{unix.EINVAL, "HALT lock on db1 refused (EINVAL)"},
		{unix.EIO, "HALT lock on db1 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.errno.Error(), func(t *testing.T) {
			err := haltLockError("db1", tt.errno)
			if !strings.Contains(err.Error(), tt.want) || !errors.Is(err, tt.errno) {
				t.Errorf("error %q, want it to contain %q and wrap the errno", err, tt.want)
			}
		})
	}
}
