package litefs

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/superfly/ltx"
)

// commitWAL turns every WAL transaction committed since the cursor into an
// LTX file. It is idempotent: with nothing new in the WAL it does nothing.
// db.mu is held.
func (db *DB) commitWAL() error { return db.commitWALMode(writeAsync) }

// commitWALMode is commitWAL with the LTX files written according to mode.
// With writeNow (the WAL fsync of a commit, before SQLite counts the
// transaction as committed) an LTX file that cannot be written fails the
// commit: nothing is recorded and the transaction's commit frame is voided,
// as SQLite itself will treat it once the fsync fails.
func (db *DB) commitWALMode(mode writeMode) error {
	f := db.file(FileWAL)
	if f == nil || db.opts.Passthrough || db.walAdopted.Load() {
		return nil
	}
	var hb [WALHeaderSize]byte
	if n, err := f.ReadAt(hb[:], 0); n < WALHeaderSize {
		if err != nil && err != io.EOF {
			return fmt.Errorf("read wal header of %s: %w", db.name, err)
		}
		db.resetWAL() // empty or truncated WAL: nothing to commit
		return nil
	}
	hdr, err := ParseWALHeader(hb[:])
	if err != nil {
		db.resetWAL()
		return nil // not yet a valid WAL (header being written)
	}

	r := db.walReader(f, hdr)
	for {
		c, ok, err := r.Next()
		if err != nil {
			return fmt.Errorf("read wal of %s: %w", db.name, err)
		} else if !ok {
			db.walBehind.Store(false)
			return nil
		}
		// Advance the cursor first: strict verification reads the WAL up to it.
		prev := db.wal
		s1, s2 := r.Checksums()
		db.wal = walCursor{valid: true, salt1: hdr.Salt1, salt2: hdr.Salt2, off: r.Offset(), s1: s1, s2: s2}
		if err := db.commitTx(db.walTx(f, hdr, c), mode); err != nil {
			// The reader has passed c: the next scan restarts at the cursor,
			// or c would never be recorded.
			db.wal = prev
			voided := mode == writeNow && db.voidWALCommit(f, hdr, c, r)
			db.walr = nil
			db.walBehind.Store(!voided)
			return err
		}
	}
}

// voidWALCommit zeroes the header of c's commit frame after litefs failed
// to record c at the WAL fsync of its commit. SQLite reports that commit as
// failed and never counts its frames (the WAL-index is not advanced), but the
// frames are intact in the file: a connection that rebuilt the WAL-index
// later (the first to open the database, or after a crash), and litefs's own
// recovery, would take the transaction as committed. Only the WAL's last
// transaction is voided: one followed by another commit is not the one being
// synced, nor one whose commit frame was written before the current holder
// of the WAL write lock took it (SQLite committed that one). It reports
// whether c was voided. db.mu is held.
func (db *DB) voidWALCommit(f *os.File, hdr WALHeader, c WALCommit, r *WALReader) bool {
	db.walr = nil // rescan from the cursor
	frame := int64(WALFrameHeaderSize) + int64(hdr.PageSize)
	if c.End-frame < db.walSession.Load() {
		return false
	}
	if _, more, err := r.Next(); err != nil || more {
		return false
	}
	if _, err := f.WriteAt(make([]byte, WALFrameHeaderSize), c.End-frame); err != nil {
		db.log.Error("could not void a failed WAL commit frame", "error", err)
		return false
	}
	return true
}

// walReader returns the reader that continues where the last scan stopped,
// including its progress through an uncommitted tail, unless the WAL was
// restarted (new salts) or SQLite wrote over that tail (a rollback).
func (db *DB) walReader(f *os.File, hdr WALHeader) *WALReader {
	low := db.walLow.Swap(math.MaxInt64)
	r := db.walr
	if r != nil && db.walrHdr.Salt1 == hdr.Salt1 && db.walrHdr.Salt2 == hdr.Salt2 {
		if low < r.PendingEnd() {
			r.Rewind()
		}
		return r
	}
	if db.wal.valid && db.wal.salt1 == hdr.Salt1 && db.wal.salt2 == hdr.Salt2 {
		r = ResumeWALReader(f, hdr, db.wal.off, db.wal.s1, db.wal.s2)
	} else {
		r = NewWALReader(f, hdr)
	}
	db.walr, db.walrHdr = r, hdr
	return r
}

// resetWAL forgets the WAL scan state (the WAL was truncated or removed).
func (db *DB) resetWAL() {
	db.wal = walCursor{}
	db.walr = nil
}

// walTx describes one committed WAL transaction. Pages not in the
// transaction (only needed for a full commit) come from the database file.
func (db *DB) walTx(wal io.ReaderAt, hdr WALHeader, c WALCommit) *tx {
	pgnos := make([]uint32, 0, len(c.Pages))
	for pgno := range c.Pages {
		pgnos = append(pgnos, pgno)
	}
	slices.Sort(pgnos)
	dbf := db.file(FileDatabase)
	return &tx{
		pageSize: hdr.PageSize,
		commit:   c.Commit,
		pgnos:    pgnos,
		read: func(pgno uint32, buf []byte) error {
			if off, ok := c.Pages[pgno]; ok {
				_, err := wal.ReadAt(buf, off)
				return err
			}
			clear(buf)
			if dbf == nil {
				return nil
			}
			n, err := dbf.ReadAt(buf, int64(pgno-1)*int64(hdr.PageSize))
			if err != nil && err != io.EOF {
				return err
			}
			clear(buf[n:])
			return nil
		},
		walOffset: c.Offset,
		walSize:   c.End - c.Offset,
		salt1:     hdr.Salt1,
		salt2:     hdr.Salt2,
	}
}

// logicalChecksum computes the database checksum from the files on disk:
// the database file with every committed WAL frame up to the cursor laid
// over it. It costs O(database size); strict-verify and recovery use it.
func (db *DB) logicalChecksum() (ltx.Checksum, error) {
	dbf := db.file(FileDatabase)
	var sums pageChecksums
	if dbf != nil {
		fi, err := dbf.Stat()
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		if err := sums.Load(dbf, fi.Size(), db.pageSize, nil); err != nil {
			return 0, err
		}
	}
	wal := db.file(FileWAL)
	if wal == nil || !db.wal.valid {
		return sums.Checksum(), nil
	}
	var hb [WALHeaderSize]byte
	if _, err := wal.ReadAt(hb[:], 0); err != nil {
		return 0, fmt.Errorf("read wal header: %w", err)
	}
	hdr, err := ParseWALHeader(hb[:])
	if err != nil {
		return 0, fmt.Errorf("parse wal header: %w", err)
	}
	if sums.pageSize == 0 {
		sums.Reset(hdr.PageSize)
	}
	buf := make([]byte, hdr.PageSize)
	r := NewWALReader(wal, hdr)
	for r.Offset() < db.wal.off {
		c, ok, err := r.Next()
		if err != nil {
			return 0, fmt.Errorf("read wal: %w", err)
		} else if !ok {
			break
		}
		if err := overlayWALCommit(&sums, wal, c, buf); err != nil {
			return 0, err
		}
	}
	return sums.Checksum(), nil
}

// overlayWALCommit applies one WAL transaction's pages to a checksum cache.
func overlayWALCommit(sums *pageChecksums, wal io.ReaderAt, c WALCommit, buf []byte) error {
	sums.Truncate(c.Commit)
	for pgno, off := range c.Pages {
		if pgno > c.Commit {
			continue
		}
		if _, err := wal.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read wal page %d: %w", pgno, err)
		}
		sums.Set(pgno, PageChecksum(pgno, buf))
	}
	return nil
}
