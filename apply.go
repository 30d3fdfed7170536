package litefs

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/superfly/ltx"
)

// The daemon's own identity in the lock tables, when it keeps SQLite's
// connections out of a database it changes underneath them.
const (
	daemonOwner  = ^uint64(0)
	daemonHandle = ^uint64(0)
)

// ApplyLTX applies an LTX file received from the primary (a replica's
// stream, or an import on the primary): a snapshot replaces the database,
// any other file must start exactly at this database's position
// (ErrPosMismatch otherwise). The whole file is read and verified, and its
// post-apply checksum checked against this database, before anything is
// touched; readers in the mount wait only for the local write, and see all
// of it or none of it.
func (db *DB) ApplyLTX(ctx context.Context, r io.Reader) (ltx.Pos, error) {
	f, err := db.SpoolLTX(r)
	if err != nil {
		return ltx.Pos{}, err
	}
	return db.ApplySpooled(ctx, []*Incoming{f})
}

// applyIncoming applies a verified file while every connection is locked
// out. owner is the lock-table owner that locks them out: the daemon, or a
// HALT grant that already holds SQLite's write locks.
func (db *DB) applyIncoming(ctx context.Context, in *incomingLTX, owner uint64) (ltx.Pos, error) {
	return db.applyAll(ctx, owner, []*incomingLTX{in}, true)
}

// incomingLTX is a received LTX file, spooled to disk and verified, with the
// checksum of each of its pages (computed once, while it was received).
type incomingLTX struct {
	path    string
	hdr     ltx.Header
	trailer ltx.Trailer
	pages   []pageChange
	dbPath  string  // a snapshot's pages, already written out as a database file
	mem     *memLTX // the file itself when it was received into memory (path is then empty)
}

// remove deletes the temporary files that were not moved into place.
func (in *incomingLTX) remove() {
	if in.mem != nil {
		in.mem.release()
	}
	if in.path != "" {
		os.Remove(in.path)
	}
	if in.dbPath != "" {
		os.Remove(in.dbPath)
	}
}

// store moves the file to path, its place in the history.
func (in *incomingLTX) store(path string) error {
	if in.mem != nil {
		return in.mem.store(path)
	}
	return os.Rename(in.path, path)
}

// writePages writes the file's pages into the database file f (path is
// where store put the file).
func (in *incomingLTX) writePages(path string, f *os.File) error {
	if in.mem != nil {
		return in.mem.writePages(f, in.hdr, in.pages)
	}
	_, _, err := writeLTXPages(path, f)
	return err
}

// spoolLTX reads r into memory (a small file) or a temporary file in the
// LTX directory while decoding it: structure, file checksum and page
// checksums are all checked in this one pass. A snapshot is decoded
// straight into a staged database file, its pages checksummed and written
// from a second goroutine (spoolSnapshot).
func (db *DB) spoolLTX(r io.Reader) (*incomingLTX, error) {
	hdr, r, err := ltx.PeekHeader(r)
	if err != nil {
		return nil, fmt.Errorf("ltx for %s is invalid or incomplete: decode ltx header: %w", db.name, err)
	}
	if hdr.IsSnapshot() {
		return db.spoolSnapshot(r)
	}
	in, rest, err := db.spoolInMemory(r)
	if err != nil {
		return nil, fmt.Errorf("ltx for %s is invalid or incomplete: %w", db.name, err)
	} else if in != nil {
		return in, nil
	}
	f, err := os.CreateTemp(db.LTXDir(), ".apply-*.tmp")
	if err != nil {
		return nil, fmt.Errorf("spool ltx for %s: %w", db.name, err)
	}
	in = &incomingLTX{path: f.Name()}
	bw := spoolBufs.Get().(*bufio.Writer)
	bw.Reset(f)
	defer spoolBufs.Put(bw)
	err = db.decodeSpooled(in, io.TeeReader(rest, bw), false)
	if err == nil {
		_, err = io.Copy(bw, rest) // keep whatever follows the trailer: the file stays whole
	}
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		in.remove()
		return nil, fmt.Errorf("ltx for %s is invalid or incomplete: %w", db.name, err)
	}
	return in, nil
}

// spoolSnapshot decodes a snapshot straight into a staged database file
// (in.dbPath); its pages are not kept as a history file too (see
// snapshot_marker.go).
func (db *DB) spoolSnapshot(r io.Reader) (*incomingLTX, error) {
	in := &incomingLTX{}
	err := db.decodeSpooled(in, r, true)
	if err == nil {
		_, err = io.Copy(io.Discard, r)
	}
	if err == nil && in.dbPath == "" { // no pages: an empty database file
		var stage *stagedDB
		if stage, err = db.newStagedDB(in.hdr.PageSize, 0); err == nil {
			in.dbPath = stage.name()
			err = stage.close()
		}
	}
	if err != nil {
		in.remove()
		return nil, fmt.Errorf("ltx for %s is invalid or incomplete: %w", db.name, err)
	}
	return in, nil
}

// decodeSpooled decodes and verifies the LTX stream r into in: header,
// trailer and page checksums (a snapshot's post-apply checksum is checked
// from them by checkApplicable). A snapshot is also written out as the new
// database file now (in.dbPath), so applying it is a rename, not a second
// decode.
func (db *DB) decodeSpooled(in *incomingLTX, r io.Reader, snapshot bool) (err error) {
	decode := decodeLTX
	if snapshot {
		decode = decodeSnapshotLTX // our own, much faster for large files
	}
	var stage *stagedDB
	var sink *snapshotSink
	in.hdr, in.trailer, err = decode(r, func(h ltx.Header, pgno uint32, data []byte) error {
		if !h.IsSnapshot() {
			in.pages = append(in.pages, pageChange{pgno: pgno, sum: PageChecksum(pgno, data)})
			return nil
		}
		if stage == nil {
			var err error
			if stage, err = db.newStagedDB(h.PageSize, h.Commit); err != nil {
				return err
			}
			in.dbPath = stage.name()
			sink = newSnapshotSink(stage, h.Commit)
		}
		sink.add(pgno, data)
		return nil
	})
	if sink != nil {
		pages, serr := sink.finish()
		in.pages = pages
		if err == nil {
			err = serr
		}
	}
	if stage != nil {
		if serr := stage.close(); err == nil {
			err = serr
		}
	}
	return err
}

// spoolBufs reuses the write buffers of spoolLTX: allocating (and zeroing) a
// large buffer per received transaction showed up as a fifth of a busy
// replica's CPU.
var spoolBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 256<<10) }}

// checkApplicable refuses a file that does not continue this database's
// history, or whose post-apply checksum would not come out.
func (db *DB) checkApplicable(in *incomingLTX) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.checkApplicableLocked(in)
}

// checkApplicableLocked is checkApplicable with db.mu held.
func (db *DB) checkApplicableLocked(in *incomingLTX) error {
	hdr := in.hdr
	if !hdr.IsSnapshot() && hdr.PreApplyPos() != db.pos {
		return fmt.Errorf("%s: %w: the file starts after %s/%s, this database is at %s/%s", db.name, ErrPosMismatch,
			hdr.PreApplyPos().TXID, hdr.PreApplyChecksum, db.pos.TXID, db.pos.PostApplyChecksum)
	}
	fresh := hdr.IsSnapshot() || hdr.PageSize != db.pageSize
	if pgno := db.missingNewPage(in, fresh); pgno != 0 {
		return fmt.Errorf("ltx for %s is invalid: TXID %s grows the database to %d pages but does not carry page %d",
			db.name, hdr.MaxTXID, hdr.Commit, pgno)
	}
	view := pageChecksums{pageSize: hdr.PageSize, sum: db.sums.sum}
	if fresh {
		view.sum = 0
	} else {
		for pgno := hdr.Commit + 1; pgno <= db.sums.PageN(); pgno++ {
			view.sum ^= db.sums.Get(pgno)
		}
	}
	for _, p := range in.pages {
		if !fresh {
			view.sum ^= db.sums.Get(p.pgno)
		}
		view.sum ^= p.sum
	}
	if got := view.Checksum(); got != in.trailer.PostApplyChecksum {
		return fmt.Errorf("%s: %w: applying TXID %s would give %s, the file says %s", db.name, ErrChecksumMismatch,
			hdr.MaxTXID, got, in.trailer.PostApplyChecksum)
	}
	return nil
}

// missingNewPage returns the first page that in must carry but does not, or
// 0: every page past the database's end up to the commit size (every page
// when fresh), the lock page aside. The checksums count only pages carried,
// so a file leaving new pages out would leave zero pages in the database
// file that its position's checksum does not describe, and a commit size
// of 2^32 pages would make the checksum table as large as that. The walk
// ends at the first gap, so it costs at most the pages the file carries.
// in.pages is ascending (the LTX decoder checks the order).
func (db *DB) missingNewPage(in *incomingLTX, fresh bool) uint32 {
	from := uint32(1)
	if !fresh {
		from = db.sums.PageN() + 1
	}
	lock := ltx.LockPgno(in.hdr.PageSize)
	i, _ := slices.BinarySearchFunc(in.pages, from, func(p pageChange, pgno uint32) int { return cmp.Compare(p.pgno, pgno) })
	for pgno := uint64(from); pgno <= uint64(in.hdr.Commit); pgno++ {
		switch {
		case pgno == uint64(lock):
		case i < len(in.pages) && uint64(in.pages[i].pgno) == pgno:
			i++
		default:
			return uint32(pgno)
		}
	}
	return 0
}

// applyLocked writes a verified LTX file into the history and the database
// file, and moves the position. The file goes into the history first: a
// crash half-way leaves a database that recovery completes from it.
func (db *DB) applyLocked(in *incomingLTX) (ltx.Pos, error) {
	hdr := in.hdr
	if err := db.stillFollows(hdr); err != nil {
		return ltx.Pos{}, err
	}
	if err := db.prepareApply(); err != nil {
		return ltx.Pos{}, err
	}
	if hdr.IsSnapshot() {
		pos := ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: in.trailer.PostApplyChecksum}
		if err := db.installSnapshot(in.dbPath, pos); err != nil {
			return ltx.Pos{}, err
		}
	} else {
		path := filepath.Join(db.LTXDir(), ltxFileName(hdr.MinTXID, hdr.MaxTXID))
		if err := in.store(path); err != nil {
			return ltx.Pos{}, fmt.Errorf("store ltx for %s: %w", db.name, err)
		}
		if err := in.writePages(path, db.file(FileDatabase)); err != nil {
			return ltx.Pos{}, fmt.Errorf("apply ltx to %s: %w", db.name, err)
		}
		db.dropSnapshotMarker()
	}
	db.unsynced = true
	if hdr.IsSnapshot() || hdr.PageSize != db.pageSize {
		db.sums.Reset(hdr.PageSize)
	}
	db.sums.Truncate(hdr.Commit)
	for _, p := range in.pages {
		db.sums.Set(p.pgno, p.sum)
	}
	db.pos = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: in.trailer.PostApplyChecksum}
	db.pageSize = hdr.PageSize
	db.resetDirty()
	if got := db.sums.Checksum(); got != db.pos.PostApplyChecksum {
		return ltx.Pos{}, fmt.Errorf("%s after TXID %s: %w: %s, want %s", db.name, hdr.MaxTXID, ErrChecksumMismatch, got, db.pos.PostApplyChecksum)
	}
	return db.pos, nil
}

// stillFollows refuses a file checked before the lock-out when the
// database moved meanwhile (a snapshot follows anything). db.mu is held.
func (db *DB) stillFollows(hdr ltx.Header) error {
	if !hdr.IsSnapshot() && hdr.PreApplyPos() != db.pos {
		return fmt.Errorf("%s: %w: the database moved while waiting for readers", db.name, ErrPosMismatch)
	}
	return nil
}

// prepareApply settles what must be on disk before received pages go into
// the database file: queued LTX files written, a refused transaction rolled
// back, the WAL checkpointed and emptied. db.mu is held.
func (db *DB) prepareApply() error {
	if err := db.ltxw.drain(); err != nil {
		return fmt.Errorf("write ltx for %s: %w", db.name, err)
	}
	if err := db.rollbackRefusedTx(); err != nil {
		return err
	}
	return db.checkpointAndResetWAL()
}

// checkpointAndResetWAL copies the recorded WAL transactions into the
// database file and empties the WAL, while every connection is locked out:
// the pages about to be written go to the database file, and the WAL's
// older versions of them must not come back. (A replica's WAL is empty; a
// primary's holds its own recent commits when it imports.) db.mu is held.
func (db *DB) checkpointAndResetWAL() error {
	wal := db.file(FileWAL)
	if wal == nil {
		return nil
	}
	if fi, err := wal.Stat(); err != nil || fi.Size() == 0 {
		return err
	}
	if err := db.settleWAL(); err != nil {
		return err
	}
	pages, err := db.recordedWALPages()
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", db.name, err)
	}
	dbf, buf := db.file(FileDatabase), make([]byte, db.pageSize)
	for pgno, off := range pages {
		if pgno > db.sums.PageN() {
			continue
		}
		if _, err := wal.ReadAt(buf, off); err != nil {
			return fmt.Errorf("checkpoint %s: read wal page %d: %w", db.name, pgno, err)
		}
		if _, err := dbf.WriteAt(buf, int64(pgno-1)*int64(db.pageSize)); err != nil {
			return fmt.Errorf("checkpoint %s: write page %d: %w", db.name, pgno, err)
		}
	}
	if err := dbf.Truncate(int64(db.sums.PageN()) * int64(db.pageSize)); err != nil {
		return fmt.Errorf("checkpoint %s: %w", db.name, err)
	}
	if err := db.syncFile(FileDatabase); err != nil {
		return err
	}
	if err := wal.Truncate(0); err != nil {
		return fmt.Errorf("reset wal of %s: %w", db.name, err)
	}
	db.resetWAL()
	return nil
}

// replaceDatabaseFile renames a staged database file over the database
// file and switches the open descriptor to it. Every connection is locked
// out; the kernel's cached pages are dropped afterwards.
func (db *DB) replaceDatabaseFile(staged string) error {
	if err := os.Rename(staged, db.path(FileDatabase)); err != nil {
		return fmt.Errorf("replace database file of %s: %w", db.name, err)
	}
	f, err := os.OpenFile(db.path(FileDatabase), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open new database file of %s: %w", db.name, err)
	}
	db.fmu.Lock()
	old := db.files[FileDatabase]
	db.files[FileDatabase] = f
	db.fmu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// removeHistoryBefore deletes every LTX file but keep: after a snapshot the
// older history no longer leads to this database.
func (db *DB) removeHistoryBefore(keep string) {
	files, err := listLTX(db.LTXDir())
	if err != nil {
		return
	}
	for _, r := range files {
		if name := ltxFileName(r.min, r.max); name != keep {
			_ = os.Remove(filepath.Join(db.LTXDir(), name))
		}
	}
}

// headerWAL reports whether the database file's header says WAL mode.
func (db *DB) headerWAL() bool {
	f := db.file(FileDatabase)
	if f == nil {
		return false
	}
	var b [2]byte
	if _, err := f.ReadAt(b[:], 18); err != nil {
		return false
	}
	return b[0] == 2 && b[1] == 2
}

// exclusive takes the locks that keep every SQLite connection of the mount
// out of the database while the daemon changes it: in rollback mode
// SQLite's EXCLUSIVE lock (PENDING, RESERVED and the SHARED range); in WAL
// mode the WAL write, checkpoint, recovery and every read-mark lock. A
// barrier stops new readers first, so a steady stream of them cannot starve
// the apply; they retry as SQLite does when busy.
func (db *DB) exclusive(ctx context.Context, owner uint64) (release func(), err error) {
	kind, ranges := FileDatabase, [][2]uint64{
		{PendingByte, PendingByte}, {ReservedByte, ReservedByte}, {SharedFirst, SharedFirst + SharedSize - 1},
	}
	if db.headerWAL() {
		kind, ranges = FileSHM, [][2]uint64{{WALWriteLockByte, WALReadLockByte0 + 4}}
	}
	if owner != daemonOwner {
		// A HALT grant already holds the write lock (RESERVED, or the WAL
		// write lock); releasing it here would hand it to local writers.
		ranges = [][2]uint64{{PendingByte, PendingByte}, {SharedFirst, SharedFirst + SharedSize - 1}}
		if kind == FileSHM {
			ranges = [][2]uint64{{WALCheckpointLockByte, WALReadLockByte0 + 4}}
		}
	}
	t := db.locks[kind]
	for _, r := range ranges {
		defer t.Barrier(owner, LockWrite, r[0], r[1])()
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	unlock := func() {
		for _, r := range ranges {
			t.TryLock(owner, owner, 0, LockUnlock, r[0], r[1])
		}
	}
	for _, r := range ranges {
		if err := t.Lock(ctx, owner, owner, 0, LockWrite, r[0], r[1]); err != nil {
			unlock()
			return nil, err
		}
	}
	if kind == FileSHM {
		if err := db.resetWALIndex(); err != nil {
			unlock()
			return nil, err
		}
	}
	return unlock, nil
}

// resetWALIndex zeroes both copies of the WAL-index header in -shm while
// every connection is locked out, so that the next one to read rebuilds it
// and every connection drops its page cache: in WAL mode that header, not
// the database file, is how SQLite notices that the database changed.
func (db *DB) resetWALIndex() error {
	if db.file(FileSHM) == nil {
		return nil
	}
	// Dirty pages mapped by connections go back to the file first...
	if err := db.store.invalidate(db.name, FileSHM); err != nil {
		return fmt.Errorf("flush -shm of %s: %w", db.name, err)
	}
	if f := db.file(FileSHM); f != nil {
		if _, err := f.WriteAt(make([]byte, 96), 0); err != nil {
			return fmt.Errorf("reset wal index of %s: %w", db.name, err)
		}
	}
	db.walIndexInvalid()
	// ...and pages read in meanwhile are dropped again.
	return db.store.invalidate(db.name, FileSHM)
}

// invalidateAfterApply drops the kernel's cached pages of the database file
// and of the WAL (which an apply may have emptied).
func (db *DB) invalidateAfterApply() error {
	if err := db.store.invalidate(db.name, FileDatabase); err != nil {
		return err
	}
	return db.store.invalidate(db.name, FileWAL)
}
