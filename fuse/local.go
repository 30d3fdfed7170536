package fuse

import (
	"context"
	"errors"
	"io"
	"os"

	"bazil.org/fuse"
	"bazil.org/fuse/fs"
	"github.com/litefs/litefs"
)

// localNode is a plain file kept in the data directory's local/ folder: not
// a database, not replicated (SQLite's super-journals, stray files).
type localNode struct {
	fs    *FS
	name  string
	locks *litefs.LockTable
}

// Attr reports the local file's attributes.
func (n *localNode) Attr(ctx context.Context, a *fuse.Attr) error {
	fi, err := os.Stat(n.fs.localPath(n.name))
	if err != nil {
		return n.fs.errno("getattr", err)
	}
	a.Mode = fi.Mode() & 0o777
	a.Size = uint64(fi.Size())
	a.Blocks = (a.Size + 511) / 512
	a.Mtime = fi.ModTime()
	a.Nlink = 1
	a.Valid = attrValid
	return nil
}

// Open opens the local file.
func (n *localNode) Open(ctx context.Context, req *fuse.OpenRequest, resp *fuse.OpenResponse) (fs.Handle, error) {
	resp.Flags |= fuse.OpenKeepCache
	return n.open(int(req.Flags))
}

func (n *localNode) open(flags int) (*localHandle, error) {
	// One read-write descriptor serves any access mode; the kernel passes
	// offsets (so no O_APPEND) and has already checked existence (no O_EXCL).
	flags = flags&^(os.O_WRONLY|os.O_APPEND|os.O_EXCL) | os.O_RDWR
	f, err := os.OpenFile(n.fs.localPath(n.name), flags, 0o644)
	if err != nil {
		return nil, n.fs.errno("open", err)
	}
	return &localHandle{node: n, f: f}, nil
}

// Setattr applies a size change.
func (n *localNode) Setattr(ctx context.Context, req *fuse.SetattrRequest, resp *fuse.SetattrResponse) error {
	if req.Valid.Size() {
		if err := os.Truncate(n.fs.localPath(n.name), int64(req.Size)); err != nil {
			return n.fs.errno("truncate", err)
		}
	}
	return n.Attr(ctx, &resp.Attr)
}

// Fsync makes the local file durable.
func (n *localNode) Fsync(ctx context.Context, req *fuse.FsyncRequest) error {
	f, err := os.Open(n.fs.localPath(n.name))
	if err != nil {
		return n.fs.errno("fsync", err)
	}
	defer f.Close()
	return n.fs.errno("fsync", f.Sync())
}

// localHandle is an open local file.
type localHandle struct {
	node *localNode
	f    *os.File
}

// Read reads from the local file.
func (h *localHandle) Read(ctx context.Context, req *fuse.ReadRequest, resp *fuse.ReadResponse) error {
	buf := resp.Data[:req.Size]
	n, err := h.f.ReadAt(buf, req.Offset)
	resp.Data = buf[:n]
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return h.node.fs.errno("read", err)
}

// Write writes to the local file.
func (h *localHandle) Write(ctx context.Context, req *fuse.WriteRequest, resp *fuse.WriteResponse) error {
	n, err := h.f.WriteAt(req.Data, req.Offset)
	resp.Size = n
	return h.node.fs.errno("write", err)
}

// Flush drops the closing process's POSIX locks.
func (h *localHandle) Flush(ctx context.Context, req *fuse.FlushRequest) error {
	h.node.locks.ReleaseOwner(uint64(req.LockOwner))
	return nil
}

// Release closes the file and drops the description's OFD locks.
func (h *localHandle) Release(ctx context.Context, req *fuse.ReleaseRequest) error {
	h.node.locks.ReleaseHandle(uint64(req.Handle))
	if err := h.f.Close(); err != nil {
		return h.node.fs.errno("close", err)
	}
	return nil
}

// Lock implements F_SETLK.
func (h *localHandle) Lock(ctx context.Context, req *fuse.LockRequest) error {
	return h.node.fs.setLock(ctx, h.node.locks, req, false, nil)
}

// LockWait implements F_SETLKW.
func (h *localHandle) LockWait(ctx context.Context, req *fuse.LockWaitRequest) error {
	return h.node.fs.setLock(ctx, h.node.locks, (*fuse.LockRequest)(req), true, nil)
}

// Unlock implements F_UNLCK.
func (h *localHandle) Unlock(ctx context.Context, req *fuse.UnlockRequest) error {
	return h.node.fs.setLock(ctx, h.node.locks, (*fuse.LockRequest)(req), false, nil)
}

// QueryLock implements F_GETLK.
func (h *localHandle) QueryLock(ctx context.Context, req *fuse.QueryLockRequest, resp *fuse.QueryLockResponse) error {
	queryLock(h.node.locks, req, resp)
	return nil
}
