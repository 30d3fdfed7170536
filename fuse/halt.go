package fuse

import (
	"context"
	"errors"
	"syscall"

	"bazil.org/fuse"
	"github.com/litefs/litefs"
)

// The HALT lock through NAME-lock (SPEC 8.1): only an exclusive lock on
// byte litefs.HaltByte means anything. Errors an application can act on:
// EAGAIN busy or timed out, EINTR interrupted, ENOLCK this descriptor
// already holds or waits, EINVAL any other byte or range; EIO only for
// real faults.

// haltLock answers F_OFD_SETLK(W) and F_SETLK(W) on NAME-lock.
func (f *FS) haltLock(ctx context.Context, db *litefs.DB, req *fuse.LockRequest, wait bool) error {
	if req.LockFlags&fuse.LockFlock != 0 {
		return syscall.ENOTSUP
	}
	if req.Lock.Type == fuse.LockUnlock {
		return f.haltUnlock(db, req)
	}
	if req.Lock.Start != litefs.HaltByte || req.Lock.End != litefs.HaltByte || req.Lock.Type != fuse.LockWrite {
		f.log.Warn("refused lock on a -lock file: only an exclusive lock on byte 72 is the HALT lock",
			"db", db.Name(), "start", req.Lock.Start, "end", req.Lock.End)
		return syscall.EINVAL
	}
	err := db.LockHalt(ctx, uint64(req.LockOwner), uint64(req.Handle), uint32(req.Lock.PID), wait)
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, litefs.ErrHaltAlreadyHeld):
		return syscall.ENOLCK
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, litefs.ErrDeadlock):
		return syscall.EDEADLK
	case errors.Is(err, litefs.ErrPosMismatch):
		f.log.Error("HALT refused: this replica diverged from the primary", "db", db.Name(), "error", err)
		return syscall.EIO
	}
	f.log.Warn("HALT not granted", "db", db.Name(), "error", err)
	return syscall.EAGAIN
}

// haltUnlock answers F_UNLCK on NAME-lock: releasing byte HaltByte
// releases the HALT; releasing a lock not held is a no-op.
func (f *FS) haltUnlock(db *litefs.DB, req *fuse.LockRequest) error {
	owner := uint64(req.LockOwner)
	t := db.Locks(litefs.FileLock)
	if req.Lock.Start <= litefs.HaltByte && req.Lock.End >= litefs.HaltByte && t.HeldBy(owner, litefs.LockWrite, litefs.HaltByte, litefs.HaltByte) {
		db.UnlockHalt(owner)
	}
	t.TryLock(owner, uint64(req.Handle), uint32(req.Lock.PID), litefs.LockUnlock, req.Lock.Start, req.Lock.End)
	return nil
}

// haltQuery answers F_GETLK on NAME-lock: a lock held on this node, or
// else the HALT another node holds according to the primary.
func (f *FS) haltQuery(ctx context.Context, db *litefs.DB, req *fuse.QueryLockRequest, resp *fuse.QueryLockResponse) error {
	queryLock(db.Locks(litefs.FileLock), req, resp)
	if resp.Lock.Type != fuse.LockUnlock || req.Lock.Start > litefs.HaltByte || req.Lock.End < litefs.HaltByte {
		return nil
	}
	held, err := db.QueryRemoteHalt(ctx)
	if err != nil {
		f.log.Warn("HALT query failed", "db", db.Name(), "error", err)
		return syscall.EAGAIN
	}
	if held {
		resp.Lock = fuse.FileLock{Start: litefs.HaltByte, End: litefs.HaltByte, Type: fuse.LockWrite}
	}
	return nil
}

// walWriteRefused reports whether a lock request on -shm asks for SQLite's
// WAL write lock and must be refused: on a replica without the HALT lock.
func (f *FS) walWriteRefused(db *litefs.DB, req *fuse.LockRequest) bool {
	if req.Lock.Type != fuse.LockWrite || req.Lock.Start > litefs.WALWriteLockByte || req.Lock.End < litefs.WALWriteLockByte {
		return false
	}
	if db.MayLockWALWrite(uint64(req.LockOwner)) {
		return false
	}
	if f.store.IsPrimary() {
		f.log.Debug("refused the WAL write lock: a replica holds the HALT lock", "db", db.Name())
		return true
	}
	f.log.Warn("refused write on a replica without the HALT lock (WAL write lock)", "db", db.Name())
	f.store.NoteRefusedWrite()
	return true
}
