package fuse

import (
	"context"
	"math"
	"os"
	"syscall"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
	"github.com/litefs/litefs"
)

// fileNode is a database file or one of its side files (journal, WAL, SHM,
// lock). It holds no data: every call goes to the DB.
type fileNode struct {
	fs   *FS
	db   *litefs.DB
	kind litefs.FileKind
}

var (
	_ fs.NodeOpener     = (*fileNode)(nil)
	_ fs.NodeSetattrer  = (*fileNode)(nil)
	_ fs.NodeFsyncer    = (*fileNode)(nil)
	_ fs.HandleReader   = (*fileHandle)(nil)
	_ fs.HandleWriter   = (*fileHandle)(nil)
	_ fs.HandleFlusher  = (*fileHandle)(nil)
	_ fs.HandleReleaser = (*fileHandle)(nil)
	_ fs.HandleLocker   = (*fileHandle)(nil)
)

// Attr reports the backing file's size. The lock file is empty.
func (n *fileNode) Attr(ctx context.Context, a *fuse.Attr) error {
	if n.kind != litefs.FileLock && !n.db.Exists(n.kind) {
		return syscall.ENOENT
	}
	fi, err := n.db.Stat(n.kind)
	if err != nil {
		return n.fs.errno("getattr", err)
	}
	a.Mode = 0o644
	if fi != nil {
		a.Mode = fi.Mode().Perm()
	}
	if fi != nil {
		a.Size = uint64(fi.Size())
		a.Mtime, a.Ctime, a.Atime = fi.ModTime(), fi.ModTime(), fi.ModTime()
	}
	a.Blocks = (a.Size + 511) / 512
	a.Nlink = 1
	a.Valid = attrValid
	return nil
}

// Open returns a handle on the file (see openFlags for its caching).
func (n *fileNode) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fs.Handle, error) {
	if n.kind != litefs.FileLock && !n.db.Exists(n.kind) {
		return nil, syscall.ENOENT
	}
	if req.Flags&fuse.OpenTruncate != 0 && n.kind != litefs.FileLock {
		if err := n.db.Truncate(n.kind, 0); err != nil {
			return nil, n.fs.errno("open", err)
		}
	}
	resp.Flags |= openFlags(n.kind)
	return &fileHandle{node: n}, nil
}

// openFlags returns the open flags of a handle on kind, the same whether
// the file was opened or created. Database pages stay in the kernel's page
// cache between opens: every change to them passes through here. The WAL is
// uncached: the kernel sends a cached write in one request per page it only
// partly covers, so each WAL frame (a 24-byte header and a page, at offsets
// that are not page-aligned) would cost three requests instead of two.
// SQLite never maps the WAL into memory, so nothing needs its page cache.
func openFlags(kind litefs.FileKind) fuse.OpenResponseFlags {
	if kind == litefs.FileWAL {
		return fuse.OpenKeepCache | fuse.OpenDirectIO
	}
	return fuse.OpenKeepCache
}

// Setattr applies a size change; other attributes are fixed.
func (n *fileNode) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Size() {
		if n.kind == litefs.FileLock {
			return syscall.EPERM
		}
		if err := n.db.Truncate(n.kind, int64(req.Size)); err != nil {
			return n.fs.errno("truncate", err)
		}
	}
	if req.Valid.Mode() && n.kind != litefs.FileLock {
		if err := n.db.Chmod(n.kind, req.Mode); err != nil {
			return n.fs.errno("chmod", err)
		}
	}
	return n.Attr(ctx, &resp.Attr)
}

// Fsync makes the file durable (and, first, the history behind it).
func (n *fileNode) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	return n.fs.errno("fsync", n.db.Sync(n.kind))
}

// fileHandle is one open file description of a fileNode.
type fileHandle struct{ node *fileNode }

// Read reads from the backing file; the lock file reads as empty.
func (h *fileHandle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	if h.node.kind == litefs.FileLock {
		return nil
	}
	buf := resp.Data[:req.Size]
	n, err := h.node.db.ReadAt(h.node.kind, buf, req.Offset)
	resp.Data = buf[:n]
	return h.node.fs.errno("read", err)
}

// Write writes to the backing file.
func (h *fileHandle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	if h.node.kind == litefs.FileLock {
		h.node.fs.log.Warn("refused write to a lock file", "db", h.node.db.Name())
		return syscall.EBADF
	}
	n, err := h.node.db.WriteAt(h.node.kind, req.Data, req.Offset)
	resp.Size = n
	if os.IsNotExist(err) {
		return syscall.ENOENT
	}
	return h.node.fs.errno("write", err)
}

// Flush is a close(2) of one descriptor: POSIX locks of the closing process go.
func (h *fileHandle) Flush(ctx context.Context, req *fuse.FlushRequest) error {
	db, kind := h.node.db, h.node.kind
	owner := uint64(req.LockOwner)
	if !db.Locks(kind).HeldBy(owner, litefs.LockRead, 0, math.MaxUint64) {
		return nil // the common close: this process holds no lock here
	}
	if err := db.BeforeUnlock(kind, owner, 0, math.MaxUint64, true); err != nil {
		return h.node.fs.errno("flush", err)
	}
	h.beforeRelease(owner, 0)
	db.Locks(kind).ReleaseOwner(owner)
	return h.node.fs.errno("flush", db.AfterUnlock(kind))
}

// Release is the last close of the file description: its OFD locks go.
func (h *fileHandle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	db, kind := h.node.db, h.node.kind
	if err := db.BeforeUnlock(kind, 0, 0, math.MaxUint64, true); err != nil {
		return h.node.fs.errno("release", err)
	}
	h.beforeRelease(0, uint64(req.Handle))
	db.Locks(kind).ReleaseHandle(uint64(req.Handle))
	if err := db.AfterUnlock(kind); err != nil {
		return h.node.fs.errno("release", err)
	}
	return h.node.fs.errno("release", h.node.db.HandleClosed(h.node.kind))
}

// Lock implements F_SETLK.
func (h *fileHandle) Lock(ctx context.Context, req *fuse.LockRequest) error {
	return h.lock(ctx, req, false)
}

// LockWait implements F_SETLKW.
func (h *fileHandle) LockWait(ctx context.Context, req *fuse.LockWaitRequest) error {
	return h.lock(ctx, (*fuse.LockRequest)(req), true)
}

// coversWriteLock reports whether a lock on kind from start to end covers
// SQLite's write lock: RESERVED on the database, the WAL write lock in -shm.
func coversWriteLock(kind litefs.FileKind, start, end uint64) bool {
	b := uint64(litefs.ReservedByte)
	switch kind {
	case litefs.FileDatabase:
	case litefs.FileSHM:
		b = litefs.WALWriteLockByte
	default:
		return false
	}
	return start <= b && b <= end
}

// lock answers F_SETLK(W): the HALT lock on NAME-lock, SQLite's locks
// elsewhere (a replica refuses the WAL write lock without the HALT).
func (h *fileHandle) lock(ctx context.Context, req *fuse.LockRequest, wait bool) error {
	db, kind := h.node.db, h.node.kind
	switch {
	case kind == litefs.FileLock:
		return h.node.fs.haltLock(ctx, db, req, wait)
	case kind == litefs.FileSHM && h.node.fs.walWriteRefused(db, req):
		db.LocalWriteLock(false)
		return syscall.EAGAIN
	}
	err := h.node.fs.setLock(ctx, db.Locks(kind), req, wait, nil)
	if req.Lock.Type == fuse.LockWrite && coversWriteLock(kind, req.Lock.Start, req.Lock.End) {
		db.LocalWriteLock(err == nil)
	}
	return err
}

// Unlock implements F_UNLCK; the DB records a finished writer's
// transaction around it.
func (h *fileHandle) Unlock(ctx context.Context, req *fuse.UnlockRequest) error {
	db, kind := h.node.db, h.node.kind
	if kind == litefs.FileLock {
		return h.node.fs.haltUnlock(db, (*fuse.LockRequest)(req))
	}
	if err := db.BeforeUnlock(kind, uint64(req.LockOwner), req.Lock.Start, req.Lock.End, false); err != nil {
		return h.node.fs.errno("unlock", err)
	}
	if kind == litefs.FileSHM && req.Lock.Start <= litefs.WALWriteLockByte && req.Lock.End >= litefs.WALWriteLockByte {
		defer db.WALWriteUnlocked(uint64(req.LockOwner))
	}
	return h.node.fs.setLock(ctx, db.Locks(kind), (*fuse.LockRequest)(req), false, func() error {
		return db.AfterUnlock(kind)
	})
}

// QueryLock implements F_GETLK.
func (h *fileHandle) QueryLock(ctx context.Context, req *fuse.QueryLockRequest, resp *fuse.QueryLockResponse) error {
	if h.node.kind == litefs.FileLock {
		return h.node.fs.haltQuery(ctx, h.node.db, req, resp)
	}
	queryLock(h.node.db.Locks(h.node.kind), req, resp)
	return nil
}

// beforeRelease ends what a closing owner (close(2)) or file description
// (last close) holds beyond its lock-table entries: the HALT lock, the
// WAL-index rebuild grant.
func (h *fileHandle) beforeRelease(owner, handle uint64) {
	db := h.node.db
	switch h.node.kind {
	case litefs.FileLock:
		if handle != 0 {
			db.ReleaseHaltHandle(handle)
		} else {
			db.UnlockHalt(owner)
		}
	case litefs.FileSHM:
		if owner != 0 {
			db.WALWriteUnlocked(owner)
		}
	}
}
