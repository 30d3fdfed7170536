package litefs

import (
	"context"
	"fmt"
)

// WAL-mode readers on the primary while a replica holds the HALT.
//
// Applying a forwarded transaction resets the primary's WAL index (as on a
// replica), and the next connection to read rebuilds it, which SQLite does
// under the WAL write lock. The HALT holds that lock for the halter, so
// readers would wait until the HALT ends. Instead, after each forwarded
// apply in WAL mode the HALT's owner lets go of the WAL write lock in the
// lock table and a gate takes its place (walOpen): the lock is granted only
// to the first connection that asks after the reset, to rebuild the index
// (MayLockWALWrite, as on a replica), and any WAL write through the mount is
// refused. The next forwarded apply takes the lock back first, waiting for
// that rebuild to finish.

// openWALForRebuild lets a reader rebuild the WAL index after a forwarded
// apply in WAL mode. halt.mu is held.
func (db *DB) openWALForRebuild(h *heldHalt) {
	if !db.headerWAL() {
		return
	}
	db.halt.walOpen.Store(true) // the gate first: no window without it
	db.locks[FileSHM].TryLock(h.owner, h.owner, 0, LockUnlock, WALWriteLockByte, WALWriteLockByte)
}

// closeWALForRebuild takes the WAL write lock back for the HALT's owner,
// waiting for a rebuild in progress. halt.mu is held.
func (db *DB) closeWALForRebuild(ctx context.Context, h *heldHalt) error {
	if !db.halt.walOpen.Load() {
		return nil
	}
	if err := db.locks[FileSHM].Lock(ctx, h.owner, h.owner, 0, LockWrite, WALWriteLockByte, WALWriteLockByte); err != nil {
		return fmt.Errorf("halt %s: take the WAL write lock back: %w", db.name, err)
	}
	db.halt.walOpen.Store(false)
	return nil
}

// HaltWALOpen reports whether the HALT's owner has let go of the WAL write
// lock so that a reader can rebuild the WAL index: the lock then goes only
// to that reader, and WAL writes through the mount are refused.
func (db *DB) HaltWALOpen() bool { return db.halt.walOpen.Load() }

// walWriteUnderHalt returns an error for a WAL write through the mount
// while the HALT's owner has let go of the WAL write lock: only the HALT
// holder may write, and it does through POST /tx.
func (db *DB) walWriteUnderHalt() error {
	if db.HaltWALOpen() {
		return fmt.Errorf("%s: %w: a replica holds the HALT lock", db.name, ErrHaltBusy)
	}
	return nil
}
