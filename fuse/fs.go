// Package fuse is litefs's FUSE layer: it presents the databases of a
// litefs.Store as one flat directory and translates each system call into a
// call on the Store or a DB. It holds no replication logic.
package fuse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
	"github.com/litefs/litefs"
)

// attrValid is how long the kernel may cache attributes and lookups of
// database files. Every change to them passes through this filesystem, so
// the kernel's copy stays right.
const attrValid = time.Second

// Options configures a mount.
type Options struct {
	AllowOther bool // let users other than the mounting one see the mount
	Debug      bool // log every FUSE request
}

// FS is the filesystem served at the mount point.
type FS struct {
	store *litefs.Store
	log   *slog.Logger

	mu    sync.Mutex
	nodes map[string]fs.Node // stable node per file, so the kernel sees one inode
	root  *rootNode
	srv   *server // set while mounted
}

// NewFS returns a filesystem over store.
func NewFS(store *litefs.Store, log *slog.Logger) *FS {
	f := &FS{store: store, log: log, nodes: make(map[string]fs.Node)}
	f.root = &rootNode{fs: f}
	return f
}

// Root returns the mount's root directory.
func (f *FS) Root() (fs.Node, error) { return f.root, nil }

// Statfs reports the data directory's file system figures.
func (f *FS) Statfs(ctx context.Context, req *fuse.StatfsRequest, resp *fuse.StatfsResponse) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.store.LocalDir(), &st); err != nil {
		return f.errno("statfs", err)
	}
	resp.Blocks, resp.Bfree, resp.Bavail = st.Blocks, st.Bfree, st.Bavail
	resp.Files, resp.Ffree = st.Files, st.Ffree
	resp.Bsize, resp.Frsize = uint32(st.Bsize), uint32(st.Frsize)
	resp.Namelen = litefs.MaxNameLen
	return nil
}

// Mount mounts the filesystem at dir and serves it until ctx is done or the
// mount goes away; it then unmounts. ready is closed once requests are served.
func (f *FS) Mount(ctx context.Context, dir string, opts Options, ready chan<- struct{}) error {
	mopts := []fuse.MountOption{fuse.FSName("litefs"), fuse.Subtype("litefs"), fuse.LockingPOSIX()}
	if opts.AllowOther {
		mopts = append(mopts, fuse.AllowOther())
	}
	conn, err := fuse.Mount(dir, mopts...)
	if err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	// Closing the device waits for the read in progress on it: never do it
	// while files keep the detached mount alive (see below).
	keepConn := false
	defer func() {
		if !keepConn {
			conn.Close()
		}
	}()
	srv := newServer(f, conn)
	srv.debug = opts.Debug
	f.mu.Lock()
	f.srv = srv
	f.mu.Unlock()
	f.store.SetInvalidator(f)
	done := make(chan error, 1)
	go func() { done <- srv.serve() }()
	if ready != nil {
		close(ready)
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("serve %s: %w", dir, err)
		}
		return nil
	case <-ctx.Done():
	}
	if err := Unmount(dir); err != nil {
		f.log.Warn("unmount failed", "dir", dir, "error", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(openFilesGrace):
	}
	// A lazy unmount keeps serving files that are still open, and a read
	// on the device cannot be interrupted: stop waiting. The kernel aborts
	// the connection when this process exits (those files then fail with
	// ENOTCONN).
	f.log.Warn("files are still open in the detached mount; leaving them to fail when the daemon exits", "dir", dir, "after", openFilesGrace)
	keepConn = true
	return nil
}

// openFilesGrace is how long an unmounting daemon keeps serving files still
// open in its (lazily unmounted) mount.
const openFilesGrace = 2 * time.Second

// Unmount unmounts dir, lazily if it is busy.
func Unmount(dir string) error {
	if err := fuse.Unmount(dir); err == nil {
		return nil
	}
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// CleanStaleMount unmounts a mount left at dir by a daemon that died.
func CleanStaleMount(dir string) error {
	_, err := os.Stat(dir)
	if err == nil || !errors.Is(err, syscall.ENOTCONN) {
		return nil
	}
	return Unmount(dir)
}

// errno converts an error from the core into a FUSE error number and logs
// anything that is not an everyday condition.
func (f *FS) errno(op string, err error) error {
	if err == nil {
		return nil
	}
	var en fuse.ErrorNumber
	switch {
	case errors.As(err, &en):
		return err
	case errors.Is(err, os.ErrNotExist), errors.Is(err, litefs.ErrDatabaseNotFound):
		return fuse.ToErrno(syscall.ENOENT)
	case errors.Is(err, os.ErrExist), errors.Is(err, litefs.ErrDatabaseExists):
		return fuse.ToErrno(syscall.EEXIST)
	case errors.Is(err, litefs.ErrInvalidName):
		f.log.Warn("refused", "op", op, "error", err)
		return fuse.ToErrno(syscall.EINVAL)
	case errors.Is(err, litefs.ErrWALExclusive):
		return fuse.ToErrno(syscall.EPERM)
	case errors.Is(err, litefs.ErrReadOnlyReplica):
		return fuse.ToErrno(syscall.EROFS)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fuse.ToErrno(errno)
	}
	f.log.Error("i/o error", "op", op, "error", err)
	return fuse.ToErrno(syscall.EIO)
}

// InvalidateFile drops the kernel's cached pages (and attributes) of one
// file of a database, after the store changed it underneath. A file the
// kernel does not know has nothing cached.
func (f *FS) InvalidateFile(db string, kind litefs.FileKind) error {
	f.mu.Lock()
	n, srv := f.nodes[fileKey(db, kind)], f.srv
	f.mu.Unlock()
	if n == nil || srv == nil {
		return nil
	}
	srv.mu.Lock()
	id, ok := srv.ids[n]
	srv.mu.Unlock()
	if !ok {
		return nil
	}
	if err := srv.conn.InvalidateNode(id, 0, 0); err != nil && !errors.Is(err, fuse.ErrNotCached) {
		return fmt.Errorf("invalidate %s %s: %w", db, kind, err)
	}
	return nil
}

// readOnly reports whether writes must be refused: on a replica every
// database is read-only.
func (f *FS) readOnly() bool { return !f.store.IsPrimary() }
