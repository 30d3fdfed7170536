package litefs

import (
	"encoding/binary"
	"fmt"
)

// What a replica lets SQLite write (see docs/ARCHITECTURE.md, "Writes on a
// replica"). Connections on a replica open the database read-write, so the
// same connection can write once this node holds the HALT lock. Without it:
//
//   - rollback-journal modes: creating the journal is refused with EACCES,
//     which SQLite reports as SQLITE_READONLY ("attempt to write a readonly
//     database"), before anything is written;
//   - WAL mode: the WAL write lock is refused, which SQLite reports as
//     SQLITE_BUSY once the connection's busy timeout ends. The lock is still
//     granted to a connection rebuilding the WAL index (SQLite takes it for
//     that), which writes nothing to the WAL;
//   - anything that still reaches a write (journal_mode=OFF or MEMORY) is
//     refused with EROFS, and a commit without the HALT is refused by
//     forwardTx.
//
// Writes that only restore or settle the committed state stay allowed: a
// hot journal being played back, a checkpoint of recorded WAL frames.

// replicaWriteErr returns the error for a write of kind at off that this
// replica must refuse, or nil. Always nil on the primary.
func (db *DB) replicaWriteErr(kind FileKind, truncate bool) error {
	if db.store.IsPrimary() || kind == FileSHM || kind == FileJournal || db.HaltGranted() {
		return nil
	}
	db.mu.Lock()
	settling := db.journalHot || db.walMode()
	db.mu.Unlock()
	if kind == FileDatabase && settling || kind == FileWAL && truncate {
		return nil
	}
	db.log.Warn("refused write on a replica without the HALT lock", "file", kind.String())
	db.store.NoteRefusedWrite()
	return fmt.Errorf("%s %s: %w: take the HALT lock to write on a replica", db.name, kind, ErrReadOnlyReplica)
}

// MayCreate reports whether SQLite may create the side file kind here: on a
// replica a new journal means a write transaction, allowed only under the
// HALT lock.
func (db *DB) MayCreate(kind FileKind) bool {
	return kind != FileJournal || db.HaltGranted()
}

// MayLockWALWrite reports whether lock owner may take SQLite's WAL write
// lock. On a replica without the HALT, and on a primary whose HALT holder
// forwarded a transaction (halt_wal.go), it may only to rebuild the WAL
// index.
func (db *DB) MayLockWALWrite(owner uint64) bool {
	if db.store.IsPrimary() {
		if !db.halt.walOpen.Load() {
			return true
		}
	} else if db.HaltGranted() {
		return true
	}
	db.rhalt.mu.Lock()
	defer db.rhalt.mu.Unlock()
	if !db.rhalt.recovery {
		return false
	}
	db.rhalt.recoverer = owner
	return true
}

// WALWriteUnlocked is called when owner released SQLite's WAL write lock.
// After the connection that rebuilt the WAL index lets go, the index is
// valid again and the lock goes back to being refused without the HALT.
func (db *DB) WALWriteUnlocked(owner uint64) {
	db.rhalt.mu.Lock()
	defer db.rhalt.mu.Unlock()
	if db.rhalt.recovery && db.rhalt.recoverer == owner {
		db.rhalt.recovery, db.rhalt.recoverer = false, 0
	}
}

// walIndexInvalid records that SQLite's next reader rebuilds the WAL index
// (-shm created, truncated, or reset by an apply).
func (db *DB) walIndexInvalid() {
	db.rhalt.mu.Lock()
	defer db.rhalt.mu.Unlock()
	db.rhalt.recovery, db.rhalt.recoverer = true, 0
}

// forwardWALCommit ships the transaction whose commit frame a WAL write of
// n bytes at off just completed, on a replica holding the HALT. The write
// is SQLite's commit point: if the primary refuses, the frame header is
// zeroed (so no recovery ever counts the frame) and the write fails, which
// makes SQLite roll the transaction back.
func (db *DB) forwardWALCommit(n int, off int64) error {
	if db.store.IsPrimary() {
		return nil
	}
	f := db.file(FileWAL)
	if f == nil {
		return nil
	}
	var hb [WALHeaderSize]byte
	if _, err := f.ReadAt(hb[:], 0); err != nil {
		return nil
	}
	hdr, err := ParseWALHeader(hb[:])
	if err != nil {
		return nil
	}
	frame := int64(WALFrameHeaderSize) + int64(hdr.PageSize)
	end := off + int64(n)
	if err := db.refusedFrameRetry(off, end, frame); err != nil {
		return err
	}
	if end < WALHeaderSize+frame || (end-WALHeaderSize)%frame != 0 {
		return nil
	}
	var fh [WALFrameHeaderSize]byte
	if _, err := f.ReadAt(fh[:], end-frame); err != nil {
		return fmt.Errorf("read wal frame of %s: %w", db.name, err)
	}
	if binary.BigEndian.Uint32(fh[4:8]) == 0 {
		return nil // not a commit frame
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	err = db.commitWAL()
	if err == nil {
		return nil
	}
	db.walr = nil // rescan from the cursor: the frame is gone
	if _, zerr := f.WriteAt(make([]byte, WALFrameHeaderSize), end-frame); zerr != nil {
		db.log.Error("could not void a refused WAL commit frame", "error", zerr)
	}
	db.rhalt.mu.Lock()
	db.rhalt.refusedEnd, db.rhalt.refusedErr = end, err
	db.rhalt.mu.Unlock()
	return err
}

// refusedFrameRetry fails a write that retries the end of a commit frame
// whose transaction the primary refused: the kernel splits SQLite's page
// write at page boundaries, and SQLite retries the part that failed, which
// must fail again. A new write of that frame's header ends the refusal.
func (db *DB) refusedFrameRetry(off, end, frame int64) error {
	db.rhalt.mu.Lock()
	defer db.rhalt.mu.Unlock()
	refused := db.rhalt.refusedEnd
	switch {
	case refused == 0:
		return nil
	case off > refused-frame && end == refused:
		return db.rhalt.refusedErr
	case off <= refused-frame:
		db.rhalt.refusedEnd, db.rhalt.refusedErr = 0, nil
	}
	return nil
}

// rollbackRefusedTx plays back a hot journal left by a transaction whose
// forwarding the primary refused (SQLite would do it at its next read),
// before an apply writes over the same pages. Every connection is locked
// out. db.mu is held.
func (db *DB) rollbackRefusedTx() error {
	if !db.journalHot {
		return nil
	}
	db.closeFile(FileJournal)
	if err := db.rollbackHotJournal(); err != nil {
		return fmt.Errorf("%s: %w", db.name, err)
	}
	db.journalHot = false
	db.resetDirty()
	if err := db.store.invalidate(db.name, FileJournal); err != nil {
		db.log.Warn("kernel cache invalidation failed", "error", err)
	}
	return nil
}

// NoteRefusedWrite counts a write this replica refused an application
// (without the HALT lock). The FUSE layer calls it for the refusals it
// decides itself (a new journal, the WAL write lock).
func (s *Store) NoteRefusedWrite() { s.refusedWrites.Add(1) }

// RefusedWrites returns how many writes this node has refused applications
// as a replica since it started. The HTTP proxy compares it before and
// after a read to detect an application that tried to write on a GET.
func (s *Store) RefusedWrites() uint64 { return s.refusedWrites.Load() }
