package litefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// This file holds the file operations the FUSE layer calls on a database's
// files. Each one keeps the commit state in step with what SQLite does:
//
//   - rollback-journal mode: a transaction is the set of database pages
//     written while the journal is hot; it commits when the journal stops
//     being hot (deleted, truncated to zero, or its header zeroed). The LTX
//     file is written BEFORE that journal operation is performed, so a crash
//     in between leaves a hot journal whose rollback recovery can undo or
//     the LTX can redo.
//   - writes without any journal (journal_mode=OFF/MEMORY, VACUUM INTO's
//     output, foreign writers) commit when the writer gives up its write
//     lock or closes the file.
//   - WAL mode: a transaction is a run of WAL frames ending in a commit
//     frame; it commits when the WAL write lock is released or the WAL is
//     fsynced, whichever comes first.

// Create creates the backing file of kind if it does not exist.
func (db *DB) Create(kind FileKind) error {
	if kind == FileLock {
		return nil
	}
	if kind == FileSHM {
		db.walIndexInvalid()
	}
	return db.openFile(kind, true)
}

// Chmod sets the permission bits of the backing file of kind (SQLite gives
// a journal, WAL and -shm the permissions of their database).
func (db *DB) Chmod(kind FileKind, mode os.FileMode) error {
	f := db.file(kind)
	if f == nil {
		return os.ErrNotExist
	}
	if err := f.Chmod(mode.Perm()); err != nil {
		return fmt.Errorf("chmod %s %s: %w", db.name, kind, err)
	}
	return nil
}

// WriteAt writes p at off into the backing file of kind.
func (db *DB) WriteAt(kind FileKind, p []byte, off int64) (int, error) {
	if kind == FileDatabase || kind == FileWAL {
		if err := db.replicaWriteErr(kind, false); err != nil {
			return 0, err
		}
	}
	switch kind {
	case FileDatabase:
		return db.writeDatabase(p, off)
	case FileJournal:
		return db.writeJournal(p, off)
	case FileLock:
		return 0, fmt.Errorf("%s%s: %w", db.name, SuffixLock, errNotWritable)
	}
	f := db.file(kind)
	if f == nil && kind == FileSHM {
		// The last connection removed -shm but still has it mapped: the
		// kernel writes dirty pages back on close. The file is gone, so
		// are its contents (as on a local disk).
		return len(p), nil
	} else if f == nil {
		return 0, os.ErrNotExist
	}
	if kind == FileWAL && !db.locks[FileSHM].Held(LockWrite, WALWriteLockByte, WALWriteLockByte) &&
		db.locks[FileDatabase].Held(LockWrite, SharedFirst, SharedFirst+SharedSize-1) {
		// A connection that writes the WAL without the WAL write lock in
		// NAME-shm, while holding SQLite's EXCLUSIVE lock on the database,
		// is in locking_mode=EXCLUSIVE: SQLite then keeps the WAL index in
		// its own memory and litefs could not see its commits. (A plain
		// copy of a WAL file holds no lock and is accepted; its
		// transactions are recorded when SQLite next commits.)
		db.log.Error("refused WAL write: locking_mode=EXCLUSIVE is not supported in WAL mode; use locking_mode=NORMAL")
		return 0, fmt.Errorf("%s: %w", db.name, ErrWALExclusive)
	}
	if kind == FileWAL && db.store.IsPrimary() {
		// In WAL mode the commit point is the write of the commit frame,
		// and the transaction is recorded only when the writer unlocks:
		// a primary past its lease (or handing its role off) refuses the
		// frames themselves.
		if err := db.store.checkLease(); err != nil {
			return 0, fmt.Errorf("%s: %w", db.name, err)
		}
		if err := db.walWriteUnderHalt(); err != nil {
			return 0, err
		}
	}
	if kind == FileWAL {
		if err := db.refuseWALWhileLTXFails(); err != nil {
			return 0, err
		}
		for low := db.walLow.Load(); off < low && !db.walLow.CompareAndSwap(low, off); low = db.walLow.Load() {
		}
		for low := db.walSession.Load(); off < low && !db.walSession.CompareAndSwap(low, off); low = db.walSession.Load() {
		}
	}
	if kind == FileWAL && off == 0 {
		// A new WAL header restarts the WAL over frames that must be
		// recorded, and their LTX files written, first.
		db.mu.Lock()
		err := db.settleWAL()
		db.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	n, err := f.WriteAt(p, off)
	if err == nil && kind == FileWAL && !db.store.IsPrimary() {
		// Under the HALT a commit frame is the commit point: ship it now.
		if err := db.forwardWALCommit(n, off); err != nil {
			return 0, err
		}
	}
	return n, err
}

// commitJournal commits the transaction of a hot journal that stops being
// hot (deleted, truncated to zero, header zeroed). The LTX file is written
// before the caller carries out that journal operation. db.mu is held.
func (db *DB) commitJournal() error {
	if !db.journalHot {
		return nil
	}
	if err := db.commitRollback(); err != nil {
		return err
	}
	db.journalHot = false
	return nil
}

// settleWAL records every committed WAL transaction and waits until their
// LTX files are written. db.mu is held.
func (db *DB) settleWAL() error {
	if err := db.commitWAL(); err != nil {
		return err
	}
	if err := db.ltxw.drain(); err != nil {
		return fmt.Errorf("write ltx for %s: %w", db.name, err)
	}
	return nil
}

// errNotWritable is returned for writes to files that take none.
var errNotWritable = errors.New("file is not writable")

func (db *DB) writeDatabase(p []byte, off int64) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	f := db.file(FileDatabase)
	if f == nil {
		return 0, os.ErrNotExist
	}
	if db.walMode() {
		// A checkpoint: once the database file holds these pages the WAL
		// may be reset, so every WAL transaction must be recorded and its
		// LTX file on disk first.
		if err := db.settleWAL(); err != nil {
			return 0, err
		}
		return f.WriteAt(p, off)
	}
	n, err := f.WriteAt(p, off)
	if n > 0 {
		db.markDirty(off, n)
	}
	return n, err
}

func (db *DB) writeJournal(p []byte, off int64) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	f := db.file(FileJournal)
	if f == nil {
		return 0, os.ErrNotExist
	}
	if off == 0 && len(p) >= len(JournalMagic) {
		hot := bytes.Equal(p[:len(JournalMagic)], JournalMagic)
		if !hot {
			// Header zeroed (PERSIST mode, exclusive locking mode): commit point.
			if err := db.commitJournal(); err != nil {
				return 0, err
			}
		}
		db.journalHot = hot
	}
	return f.WriteAt(p, off)
}

// Truncate changes the size of the backing file of kind.
func (db *DB) Truncate(kind FileKind, size int64) error {
	if kind == FileLock {
		return nil
	}
	if err := db.replicaWriteErr(kind, true); err != nil {
		return err
	}
	if kind == FileSHM {
		db.walIndexInvalid()
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	f := db.file(kind)
	if f == nil {
		return os.ErrNotExist
	}
	switch kind {
	case FileDatabase:
		if !db.walMode() {
			db.sizeDirty = true
		}
	case FileJournal:
		if size == 0 {
			if err := db.commitJournal(); err != nil {
				return err
			}
		}
	case FileWAL:
		if err := db.settleWAL(); err != nil {
			return err
		}
	}
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("truncate %s %s: %w", db.name, kind, err)
	}
	return nil
}

// Sync makes the backing file of kind durable. Every LTX file written so far
// is made durable first, so history is never behind SQLite's own data.
func (db *DB) Sync(kind FileKind) error {
	if kind == FileLock {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if kind == FileWAL {
		if err := db.commitWALMode(db.walSyncMode()); err != nil {
			return err
		}
	}
	flushedAll, err := db.syncLTX()
	if err != nil {
		return err
	}
	f := db.file(kind)
	if f == nil || db.opts.SkipSync || flushedAll {
		return nil
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s %s: %w", db.name, kind, err)
	}
	return nil
}

// walSyncMode is how a WAL fsync records the transactions it finds. While
// a connection holds the WAL write lock the fsync is part of its commit
// (synchronous=FULL), before SQLite counts the transaction as committed:
// its LTX file is written at once, so a full disk fails that commit instead
// of recording one SQLite then rolls back. The fsync waits for the queued
// files anyway, so this costs nothing.
func (db *DB) walSyncMode() writeMode {
	if db.locks[FileSHM].Held(LockWrite, WALWriteLockByte, WALWriteLockByte) {
		return writeNow
	}
	return writeAsync
}

// refuseWALWhileLTXFails fails a WAL write while an earlier commit could not
// be recorded or its LTX file written (a full disk), after trying once more:
// SQLite reports the failed write (SQLITE_FULL for ENOSPC) and rolls back,
// instead of committing a transaction litefs could not record.
func (db *DB) refuseWALWhileLTXFails() error {
	if !db.ltxw.failing() && !db.walBehind.Load() {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.commitWAL(); err != nil {
		return err
	}
	if err := db.ltxw.drain(); err != nil {
		return fmt.Errorf("write ltx for %s: %w", db.name, err)
	}
	return nil
}

// Remove deletes the backing file of a side file kind (journal, WAL, SHM).
func (db *DB) Remove(kind FileKind) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	switch kind {
	case FileJournal:
		if err := db.commitJournal(); err != nil {
			return err
		}
	case FileWAL:
		if err := db.settleWAL(); err != nil {
			return err
		}
		db.resetWAL()
		db.walAdopted.Store(false)
	case FileDatabase, FileLock:
		return fmt.Errorf("remove %s %s: not a side file", db.name, kind)
	}
	db.closeFile(kind)
	if err := os.Remove(db.path(kind)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove %s %s: %w", db.name, kind, err)
	}
	return nil
}

// BeforeUnlock is called by the FUSE layer before owner's locks on
// [start, end] of kind are released (explicit unlock, close, process exit;
// all is true when every lock of the owner or handle goes). When the WAL
// write lock is about to go, the writer's transaction is recorded first:
// once the lock is free another connection may checkpoint and reset the WAL.
func (db *DB) BeforeUnlock(kind FileKind, owner uint64, start, end uint64, all bool) error {
	if kind != FileSHM {
		return nil
	}
	if !all && (start > WALWriteLockByte || end < WALWriteLockByte ||
		!db.locks[FileSHM].HeldBy(owner, LockWrite, WALWriteLockByte, WALWriteLockByte)) {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	err := db.commitWAL()
	if db.locks[FileSHM].HeldBy(owner, LockWrite, WALWriteLockByte, WALWriteLockByte) {
		db.walSession.Store(math.MaxInt64) // the writer's frames are SQLite's now
	}
	return err
}

// AfterUnlock is called by the FUSE layer after locks on kind were
// released. A journal-less write commits once nobody holds RESERVED.
func (db *DB) AfterUnlock(kind FileKind) error {
	if kind == FileDatabase {
		return db.commitUnjournaled()
	}
	return nil
}

// commitUnjournaled commits database pages written without a hot journal,
// once no connection holds the RESERVED lock.
func (db *DB) commitUnjournaled() error {
	if db.locks[FileDatabase].Held(LockWrite, ReservedByte, ReservedByte) {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.journalHot || db.walMode() || (len(db.dirty) == 0 && !db.sizeDirty && !db.forceFull) {
		return nil
	}
	return db.commitRollback()
}

// HandleClosed is called when an open file description of kind is released.
// Closing the database also activates an adopted WAL (sidefiles.go): the
// database file written so far is its base.
func (db *DB) HandleClosed(kind FileKind) error {
	if kind != FileDatabase {
		return nil
	}
	if err := db.commitUnjournaled(); err != nil {
		return err
	}
	if !db.walAdopted.Load() {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.activateAdoptedWAL()
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
