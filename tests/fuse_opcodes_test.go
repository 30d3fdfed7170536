package tests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// End-to-end answers of the mount to requests the kernel sends only for
// newer system calls (docs/fuse-opcodes.md): a statx that asks for the
// birth time, SEEK_DATA/SEEK_HOLE, copy_file_range, fsync of the directory.
// Each must work (the kernel falls back when the daemon says ENOSYS), never
// fail with ENOTDIR as it did while unknown requests fell into the
// directory code.

// syscallTimeout bounds each system call into a mount.
const syscallTimeout = 10 * time.Second

// bounded runs fn, giving up after syscallTimeout: a call into a stuck
// mount would otherwise hang the test (its goroutine stays until the
// daemon is killed by the node's cleanup).
func bounded(what string, fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(syscallTimeout):
		return fmt.Errorf("%s: no answer within %s", what, syscallTimeout)
	}
}

// statxBtime runs statx(path, STATX_BASIC_STATS|STATX_BTIME), as libuv
// (Node.js) does for every stat, and returns the result.
func statxBtime(path string) (unix.Statx_t, error) {
	var st unix.Statx_t
	err := bounded("statx "+path, func() error {
		return unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_BASIC_STATS|unix.STATX_BTIME, &st)
	})
	return st, err
}

// statxNames checks that statx with STATX_BTIME succeeds on each name in
// mnt (the root last: its answer decides nothing about the files') and
// reports the size and type the files' statx gives.
func statxNames(t *testing.T, mnt string, names ...string) {
	t.Helper()
	for _, name := range append(names, "") {
		path := filepath.Join(mnt, name)
		st, err := statxBtime(path)
		if err != nil {
			t.Errorf("statx(STATX_BTIME) %s: %v", path, err)
			continue
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("stat %s: %v", path, err)
			continue
		}
		wantDir := name == ""
		if isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR; isDir != wantDir {
			t.Errorf("statx %s: mode %o, directory %t, want %t", path, st.Mode, isDir, wantDir)
		}
		if !wantDir && int64(st.Size) != fi.Size() {
			t.Errorf("statx %s: size %d, stat says %d", path, st.Size, fi.Size())
		}
	}
}

// TestMount_StatxWithBirthTimeWorksOnEveryKindOfFile stats, the way
// Node.js does, a database in each journal mode, its -wal and -journal,
// its -pos, .primary, .lag and the root, on a primary and a replica.
func TestMount_StatxWithBirthTimeWorksOnEveryKindOfFile(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	wal := openModeDB(t, p, "wal.db", journalModeNamed(t, "wal"))
	mustExec(t, wal, "CREATE TABLE t(v TEXT)")
	mustExec(t, wal, "INSERT INTO t VALUES ('x')")
	persist := openModeDB(t, p, "persist.db", journalModeNamed(t, "persist"))
	mustExec(t, persist, "CREATE TABLE t(v TEXT)")
	waitConverged(t, ConvergeTimeout, p, rs, "wal.db", "persist.db")

	// The kernel asks STATX once per mount: after one ENOSYS it never asks
	// again. So each mount gets a fresh node and files come before the root.
	statxNames(t, p.MountDir, "wal.db", "wal.db-wal", "wal.db-shm", "persist.db",
		"persist.db-journal", "wal.db-pos", "persist.db-pos", ".lag")
	statxNames(t, r.MountDir, "persist.db", "wal.db", "wal.db-pos", ".primary", ".lag")
}

// TestMount_SeekCopyAndDirSyncGiveSaneAnswers checks lseek's SEEK_DATA and
// SEEK_HOLE (the whole file is data), copy_file_range between two files of
// the mount (a copy or an error that tells the caller to copy by hand), and
// fsync of the mount directory.
func TestMount_SeekCopyAndDirSyncGiveSaneAnswers(t *testing.T) {
	RequireFUSE(t)
	n := StartNode(t, NodeOptions{})
	db := openModeDB(t, n, "seek.db", journalModeNamed(t, "delete"))
	mustExec(t, db, "CREATE TABLE t(v BLOB)")
	mustExec(t, db, "INSERT INTO t VALUES (randomblob(10000))")

	src, err := os.Open(n.DBPath("seek.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		whence int
		want   int64
	}{{unix.SEEK_DATA, 0}, {unix.SEEK_HOLE, fi.Size()}} {
		var off int64
		err := bounded("lseek", func() (err error) {
			off, err = unix.Seek(int(src.Fd()), 0, tt.whence)
			return err
		})
		if err != nil || off != tt.want {
			t.Errorf("lseek(0, whence %d) = %d, %v; want %d", tt.whence, off, err, tt.want)
		}
	}
	checkCopyFileRange(t, n, src, fi.Size())

	dir, err := os.Open(n.MountDir)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if err := bounded("fsync dir", dir.Sync); err != nil {
		t.Errorf("fsync of the mount directory: %v", err)
	}
}

// checkCopyFileRange copies src (size bytes) into a local file of the
// mount with copy_file_range: either the bytes arrive, or the call fails
// with one of the errors on which callers (cp, Node's fs.copyFile) fall
// back to read and write.
func checkCopyFileRange(t *testing.T, n *Node, src *os.File, size int64) {
	t.Helper()
	// A side-file name of a database that does not exist is a local file.
	dst, err := os.OpenFile(n.DBPath("nosuch.db-journal"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var copied int
	err = bounded("copy_file_range", func() (err error) {
		var in, out int64 // explicit offsets: the seeks moved src's
		copied, err = unix.CopyFileRange(int(src.Fd()), &in, int(dst.Fd()), &out, int(size), 0)
		return err
	})
	switch {
	case errors.Is(err, unix.EXDEV), errors.Is(err, unix.EOPNOTSUPP):
		t.Logf("copy_file_range: %v (callers fall back to read and write)", err)
	case err != nil:
		t.Fatalf("copy_file_range: %v", err)
	default:
		want, _ := os.ReadFile(src.Name())
		got, _ := os.ReadFile(dst.Name())
		if int64(copied) != size || !bytes.Equal(got, want) {
			t.Fatalf("copy_file_range copied %d of %d bytes; content equal %t", copied, size, bytes.Equal(got, want))
		}
	}
}

// journalModeNamed returns the entry of journalModes with that name.
func journalModeNamed(t *testing.T, name string) journalMode {
	t.Helper()
	for _, m := range journalModes {
		if m.name == name {
			return m
		}
	}
	t.Fatalf("no journal mode %q", name)
	return journalMode{}
}

// TestMount_UnimplementedCallsFailWithTheErrnoCallersExpect checks what a
// program sees for calls the mount does not implement: the usual errno of
// a file system without the feature (the kernel turns the daemon's ENOSYS
// into it), never ENOTDIR on a file. Before docs/fuse-opcodes.md's audit an
// ioctl on a file failed with ENOTDIR and truncate(2) of a -pos file
// "succeeded" without changing it.
func TestMount_UnimplementedCallsFailWithTheErrnoCallersExpect(t *testing.T) {
	RequireFUSE(t)
	n := StartNode(t, NodeOptions{})
	db := openModeDB(t, n, "calls.db", journalModeNamed(t, "delete"))
	mustExec(t, db, "CREATE TABLE t(v TEXT)")
	f, err := os.OpenFile(n.DBPath("calls.db"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	local := n.DBPath("calls.db-mj0123456789") // a super-journal: a local file
	if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		call func() error
		want error // nil: success
	}{
		{"ioctl(FS_IOC_GETFLAGS) on a database", func() error { _, err := unix.IoctlGetInt(fd, unix.FS_IOC_GETFLAGS); return err }, unix.ENOTTY},
		{"fallocate", func() error { return unix.Fallocate(fd, 0, 0, 1<<20) }, unix.EOPNOTSUPP},
		{"getxattr", func() error { _, err := unix.Getxattr(f.Name(), "user.x", make([]byte, 16)); return err }, unix.EOPNOTSUPP},
		{"readlink of a database", func() error { _, err := unix.Readlink(f.Name(), make([]byte, 16)); return err }, unix.EINVAL},
		{"rmdir of a database", func() error { return unix.Rmdir(f.Name()) }, unix.ENOTDIR},
		{"truncate of a -pos file", func() error { return unix.Truncate(n.DBPath("calls.db-pos"), 0) }, unix.EACCES},
		{"renameat2(RENAME_NOREPLACE)", func() error {
			return unix.Renameat2(unix.AT_FDCWD, local, unix.AT_FDCWD, local+"0", unix.RENAME_NOREPLACE)
		}, unix.EINVAL},
		{"open(O_TMPFILE) in the root", func() error {
			fd, err := unix.Open(n.MountDir, unix.O_TMPFILE|unix.O_RDWR, 0o644)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}, unix.EOPNOTSUPP},
		{"syncfs", func() error { return unix.Syncfs(fd) }, nil},
	} {
		if err := bounded(tt.name, tt.call); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}
