package tests

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Helpers for tests that run a node whose data directory is a small tmpfs,
// to see what a full disk does to commits (issue 14).

// startNodeOnTmpfs starts a node whose data directory is a fresh tmpfs of
// the given size (e.g. "20m"). The tmpfs is unmounted and the node
// directory removed in t.Cleanup, after the node is stopped, even when the
// test fails. We run as root, so the mount needs no helper.
func startNodeOnTmpfs(t testing.TB, size string, opts NodeOptions) *Node {
	t.Helper()
	RequireFUSE(t)
	dir, err := os.MkdirTemp(workRoot, sanitize(t.Name())+"-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runBounded(10*time.Second, "mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", data); err != nil {
		t.Fatalf("mount tmpfs on %s: %v: %s", data, err, out)
	}
	t.Cleanup(func() { unmountTmpfs(t, data) })
	opts.Dir = dir
	return StartNode(t, opts)
}

// unmountTmpfs unmounts a tmpfs, lazily if something still holds it.
func unmountTmpfs(t testing.TB, dir string) {
	if err := syscall.Unmount(dir, 0); err != nil {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount tmpfs %s: %v", dir, err)
		}
	}
}

// fillDisk writes a filler file into dir until the file system has no free
// block left and returns its path; removing it frees the space again.
func fillDisk(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, size := range []int{1 << 20, 64 << 10, 4 << 10, 512} {
		buf := make([]byte, size)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
	return path
}

// freeBytes returns the space left for unprivileged writes under dir.
func freeBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
