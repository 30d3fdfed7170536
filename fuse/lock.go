package fuse

import (
	"context"
	"errors"
	"syscall"

	"bazil.org/fuse"
	"github.com/litefs/litefs"
)

// lockType converts a FUSE lock type.
func lockType(t fuse.LockType) litefs.LockType {
	switch t {
	case fuse.LockRead:
		return litefs.LockRead
	case fuse.LockWrite:
		return litefs.LockWrite
	}
	return litefs.LockUnlock
}

// setLock applies a lock request to t: EAGAIN when a non-blocking request
// conflicts, EINTR when a blocking one is interrupted, EDEADLK on deadlock.
// after runs once an unlock has been applied.
func (f *FS) setLock(ctx context.Context, t *litefs.LockTable, req *fuse.LockRequest, wait bool, after func() error) error {
	if req.LockFlags&fuse.LockFlock != 0 {
		return syscall.ENOTSUP // flock(2) is not part of the contract
	}
	typ := lockType(req.Lock.Type)
	owner, handle, pid := uint64(req.LockOwner), uint64(req.Handle), uint32(req.Lock.PID)
	if wait && typ != litefs.LockUnlock {
		err := t.Lock(ctx, owner, handle, pid, typ, req.Lock.Start, req.Lock.End)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, litefs.ErrDeadlock):
			return syscall.EDEADLK
		case ctx.Err() != nil:
			return syscall.EINTR
		}
		return f.errno("lock", err)
	}
	if !t.TryLock(owner, handle, pid, typ, req.Lock.Start, req.Lock.End) {
		return syscall.EAGAIN
	}
	if after != nil {
		return f.errno("unlock", after())
	}
	return nil
}

// queryLock answers F_GETLK from t.
func queryLock(t *litefs.LockTable, req *fuse.QueryLockRequest, resp *fuse.QueryLockResponse) {
	c, ok := t.Query(uint64(req.LockOwner), lockType(req.Lock.Type), req.Lock.Start, req.Lock.End)
	if !ok {
		resp.Lock = fuse.FileLock{Type: fuse.LockUnlock}
		return
	}
	typ := fuse.LockRead
	if c.Type == litefs.LockWrite {
		typ = fuse.LockWrite
	}
	resp.Lock = fuse.FileLock{Start: c.Start, End: c.End, Type: typ, PID: int32(c.PID)}
}
