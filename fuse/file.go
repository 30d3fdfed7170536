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
	if n.kind == litefs.FileDatabase && n.fs.readOnly() {
		a.Mode = 0o444
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

// Open returns a handle on the file. Database pages stay in the kernel's
// page cache between opens: every change to them passes through here.
func (n *fileNode) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fs.Handle, error) {
	if n.kind != litefs.FileLock && !n.db.Exists(n.kind) {
		return nil, syscall.ENOENT
	}
	if n.fs.readOnly() && !req.Flags.IsReadOnly() && (n.kind == litefs.FileDatabase || n.kind == litefs.FileJournal) {
		// SQLite then opens the file read-only, so a write reports
		// SQLITE_READONLY ("attempt to write a readonly database").
		return nil, syscall.EACCES
	}
	if req.Flags&fuse.OpenTruncate != 0 && n.kind != litefs.FileLock {
		if err := n.db.Truncate(n.kind, 0); err != nil {
			return nil, n.fs.errno("open", err)
		}
	}
	resp.Flags |= fuse.OpenKeepCache
	return &fileHandle{node: n}, nil
}

// Setattr applies a size change; other attributes are fixed.
func (n *fileNode) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Size() {
		if n.kind == litefs.FileLock {
			return syscall.EPERM
		}
		if n.fs.readOnly() && n.kind != litefs.FileSHM {
			n.fs.log.Warn("refused truncate on a replica", "db", n.db.Name(), "file", n.kind.String())
			return syscall.EROFS
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
	if h.node.fs.readOnly() && h.node.kind != litefs.FileSHM {
		h.node.fs.log.Warn("refused write on a replica", "db", h.node.db.Name(), "file", h.node.kind.String())
		return syscall.EROFS
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
	db.Locks(kind).ReleaseOwner(owner)
	return h.node.fs.errno("flush", db.AfterUnlock(kind))
}

// Release is the last close of the file description: its OFD locks go.
func (h *fileHandle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	db, kind := h.node.db, h.node.kind
	if err := db.BeforeUnlock(kind, 0, 0, math.MaxUint64, true); err != nil {
		return h.node.fs.errno("release", err)
	}
	db.Locks(kind).ReleaseHandle(uint64(req.Handle))
	if err := db.AfterUnlock(kind); err != nil {
		return h.node.fs.errno("release", err)
	}
	return h.node.fs.errno("release", h.node.db.HandleClosed(h.node.kind))
}

// Lock implements F_SETLK.
func (h *fileHandle) Lock(ctx context.Context, req *fuse.LockRequest) error {
	return h.node.fs.setLock(ctx, h.node.db.Locks(h.node.kind), req, false, nil)
}

// LockWait implements F_SETLKW.
func (h *fileHandle) LockWait(ctx context.Context, req *fuse.LockWaitRequest) error {
	return h.node.fs.setLock(ctx, h.node.db.Locks(h.node.kind), (*fuse.LockRequest)(req), true, nil)
}

// Unlock implements F_UNLCK; the DB records a finished writer's
// transaction around it.
func (h *fileHandle) Unlock(ctx context.Context, req *fuse.UnlockRequest) error {
	db, kind := h.node.db, h.node.kind
	if err := db.BeforeUnlock(kind, uint64(req.LockOwner), req.Lock.Start, req.Lock.End, false); err != nil {
		return h.node.fs.errno("unlock", err)
	}
	return h.node.fs.setLock(ctx, db.Locks(kind), (*fuse.LockRequest)(req), false, func() error {
		return db.AfterUnlock(kind)
	})
}

// QueryLock implements F_GETLK.
func (h *fileHandle) QueryLock(ctx context.Context, req *fuse.QueryLockRequest, resp *fuse.QueryLockResponse) error {
	queryLock(h.node.db.Locks(h.node.kind), req, resp)
	return nil
}
