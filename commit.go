package litefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/superfly/ltx"
)

// tx describes one committed write transaction, whatever journal mode it
// came from. commitTx is the single path that turns it into an LTX file and
// a new position.
type tx struct {
	pageSize uint32
	commit   uint32   // database size in pages after the transaction
	full     bool     // include every page 1..commit (snapshot, page size change)
	pgnos    []uint32 // candidate changed pages, ascending (ignored when full)
	read     func(pgno uint32, buf []byte) error

	walOffset, walSize int64 // where the transaction sits in the WAL (0 for journal mode)
	salt1, salt2       uint32
}

// commitTx writes the LTX file for t and advances the position. Pages whose
// content did not change are left out; a transaction that changes nothing
// writes nothing. mode says how the LTX file reaches the disk. db.mu is held.
//
// Invariant kept: db.sums describes exactly the pages of the last LTX's
// post-apply state, and db.pos.PostApplyChecksum == db.sums.Checksum().
func (db *DB) commitTx(t *tx, mode writeMode) error {
	txid := db.pos.TXID + 1
	if txid == 1 || t.pageSize != db.pageSize {
		t.full = true
	}
	if txid == 1 && t.commit == 0 {
		return nil // an empty file is no transaction
	}
	hdr := ltx.Header{
		Version:   ltx.Version,
		PageSize:  t.pageSize,
		Commit:    t.commit,
		MinTXID:   txid,
		MaxTXID:   txid,
		Timestamp: time.Now().UnixMilli(),
		WALOffset: t.walOffset, WALSize: t.walSize, WALSalt1: t.salt1, WALSalt2: t.salt2,
	}
	if txid > 1 {
		hdr.PreApplyChecksum = db.pos.PostApplyChecksum
	}

	out, err := db.newLTXOut(txid, t)
	if err != nil {
		return err
	}
	defer out.abort()
	enc, err := db.encoders.get(out.writer())
	if err != nil {
		return fmt.Errorf("ltx encoder: %w", err)
	} else if err := enc.EncodeHeader(hdr); err != nil {
		return fmt.Errorf("encode ltx header for %s: %w", db.name, err)
	}

	changes, sums, err := db.encodeTxPages(enc, t)
	if err != nil {
		return err
	}
	post := sums.Checksum()
	if !t.full && len(changes) == 0 && t.commit == db.sums.PageN() {
		_ = enc.Cleanup()
		return nil // nothing changed: no transaction
	}
	enc.SetPostApplyChecksum(post)
	if err := enc.Close(); err != nil {
		return fmt.Errorf("finish ltx for %s: %w", db.name, err)
	}
	// A rollback-journal commit completes now: a primary past its lease
	// refuses it. (WAL frames were checked when written: see WriteAt.)
	if t.walSize == 0 && db.store.IsPrimary() {
		if err := db.store.checkLease(); err != nil {
			return fmt.Errorf("%s: %w", db.name, err)
		}
	}
	// On a replica the transaction exists only once the primary took it.
	if err := db.forwardTx(out, ltx.Pos{TXID: txid, PostApplyChecksum: post}); err != nil {
		return err
	}
	if err := db.storeLTX(out, txid, mode); err != nil {
		return err
	}

	db.applyCommit(t, changes, sums, ltx.Pos{TXID: txid, PostApplyChecksum: post})
	return db.afterCommit()
}

// pageChange is the new checksum of one page of a transaction.
type pageChange struct {
	pgno uint32
	sum  ltx.Checksum
}

// encodeTxPages encodes the pages of t that changed. For a full transaction
// it returns a fresh checksum cache; otherwise it returns the changes and a
// view of the post-apply checksum computed without touching db.sums.
func (db *DB) encodeTxPages(enc *ltx.Encoder, t *tx) ([]pageChange, *pageChecksums, error) {
	if cap(db.page) < int(t.pageSize) {
		db.page = make([]byte, t.pageSize)
	}
	buf := db.page[:t.pageSize]
	lockPgno := ltx.LockPgno(t.pageSize)

	if t.full {
		sums := &pageChecksums{}
		sums.Reset(t.pageSize)
		for pgno := uint32(1); pgno <= t.commit; pgno++ {
			if pgno == lockPgno {
				sums.Set(pgno, 0)
				continue
			}
			if err := db.encodePage(enc, t, pgno, buf); err != nil {
				return nil, nil, err
			}
			sums.Set(pgno, PageChecksum(pgno, buf))
		}
		return nil, sums, nil
	}

	// Post-apply checksum: drop truncated pages, swap changed ones.
	view := pageChecksums{pageSize: t.pageSize, sum: db.sums.sum}
	for pgno := t.commit + 1; pgno <= db.sums.PageN(); pgno++ {
		view.sum ^= db.sums.Get(pgno)
	}
	var changes []pageChange
	for _, pgno := range t.pgnos {
		if pgno > t.commit || pgno == lockPgno {
			continue
		}
		if err := t.read(pgno, buf); err != nil {
			return nil, nil, fmt.Errorf("read page %d of %s: %w", pgno, db.name, err)
		}
		sum := PageChecksum(pgno, buf)
		old := db.sums.Get(pgno)
		if sum == old {
			continue
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, buf); err != nil {
			return nil, nil, fmt.Errorf("encode page %d of %s: %w", pgno, db.name, err)
		}
		view.sum ^= old ^ sum
		changes = append(changes, pageChange{pgno, sum})
	}
	return changes, &view, nil
}

// encodePage reads page pgno of t into buf and encodes it.
func (db *DB) encodePage(enc *ltx.Encoder, t *tx, pgno uint32, buf []byte) error {
	if err := t.read(pgno, buf); err != nil {
		return fmt.Errorf("read page %d of %s: %w", pgno, db.name, err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, buf); err != nil {
		return fmt.Errorf("encode page %d of %s: %w", pgno, db.name, err)
	}
	return nil
}

// applyCommit installs the new page checksums and position.
func (db *DB) applyCommit(t *tx, changes []pageChange, sums *pageChecksums, pos ltx.Pos) {
	if t.full {
		db.sums = *sums
	} else {
		db.sums.Truncate(t.commit)
		for _, c := range changes {
			db.sums.Set(c.pgno, c.sum)
		}
	}
	db.pageSize = t.pageSize
	db.sums.pageSize = t.pageSize
	db.pos = pos
}

// afterCommit runs strict verification and tells the store's subscribers.
func (db *DB) afterCommit() error {
	if db.opts.StrictVerify {
		sum, err := db.logicalChecksum()
		if err != nil {
			return fmt.Errorf("strict verify %s: %w", db.name, err)
		}
		if sum != db.pos.PostApplyChecksum {
			db.log.Error("strict verify failed", "txid", db.pos.TXID, "want", db.pos.PostApplyChecksum, "got", sum)
			return fmt.Errorf("strict verify %s at txid %s: %w: position says %s, files give %s",
				db.name, db.pos.TXID, ErrChecksumMismatch, db.pos.PostApplyChecksum, sum)
		}
	}
	db.store.notify()
	return nil
}

// commitRollback commits the pages written to the database file since the
// last commit (rollback-journal or journal-less mode). db.mu is held.
func (db *DB) commitRollback() error {
	if len(db.dirty) == 0 && !db.sizeDirty && !db.forceFull {
		return nil
	}
	if db.opts.Passthrough {
		db.resetDirty()
		return nil
	}
	f := db.file(FileDatabase)
	if f == nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat %s: %w", db.name, err)
	}
	size := fi.Size()
	ps := db.pageSize
	var hdr [100]byte
	if size > 0 {
		if _, err := f.ReadAt(hdr[:], 0); err != nil && err != io.EOF {
			return fmt.Errorf("read header of %s: %w", db.name, err)
		}
		if ps, err = parsePageSize(hdr[:]); err != nil {
			db.log.Warn("write not recorded: the file is not a SQLite database", "error", err)
			db.resetDirty()
			db.forceFull = true
			return nil
		}
	} else if ps == 0 {
		ps = 4096
	}
	t := &tx{
		pageSize: ps,
		commit:   commitSize(hdr[:], size, ps),
		full:     db.forceFull,
		read: func(pgno uint32, buf []byte) error {
			n, err := f.ReadAt(buf, int64(pgno-1)*int64(ps))
			if err != nil && err != io.EOF {
				return err
			}
			clear(buf[n:])
			return nil
		},
	}
	if !t.full {
		t.pgnos = db.dirtyPages(t.commit)
	}
	if err := db.commitTx(t, writeNow); err != nil {
		return err
	}
	db.resetDirty()
	return nil
}

// dirtyPages returns the dirty pages, plus pages the file grew by, sorted.
func (db *DB) dirtyPages(commit uint32) []uint32 {
	pgnos := make([]uint32, 0, len(db.dirty))
	for pgno := range db.dirty {
		pgnos = append(pgnos, pgno)
	}
	for pgno := db.sums.PageN() + 1; pgno <= commit; pgno++ {
		if _, ok := db.dirty[pgno]; !ok {
			pgnos = append(pgnos, pgno)
		}
	}
	slices.Sort(pgnos)
	return pgnos
}

// resetDirty forgets the pages written since the last commit.
func (db *DB) resetDirty() {
	clear(db.dirty)
	db.sizeDirty = false
	db.forceFull = false
}

// errNoSQLiteHeader: a database file's content does not start with SQLite's
// header (a file that is not, or not yet, a database).
var errNoSQLiteHeader = errors.New("no SQLite header")

// parsePageSize returns the page size stored in a SQLite database header.
func parsePageSize(hdr []byte) (uint32, error) {
	if len(hdr) < 100 || string(hdr[:16]) != "SQLite format 3\x00" {
		return 0, errNoSQLiteHeader
	}
	ps := uint32(binary.BigEndian.Uint16(hdr[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if !ltx.IsValidPageSize(ps) {
		return 0, fmt.Errorf("invalid page size %d in header", ps)
	}
	return ps, nil
}

// commitSize returns the database size in pages after a rollback-mode
// commit. SQLite shrinks the file only after the commit point (after the
// journal is gone, still under its lock), so the header's page count is the
// truth when it is valid (its change counter equals the version-valid-for
// number) and no larger than the file; otherwise the file size is.
func commitSize(hdr []byte, size int64, ps uint32) uint32 {
	filePages := uint32((size + int64(ps) - 1) / int64(ps))
	if len(hdr) < 100 || size == 0 {
		return filePages
	}
	n := binary.BigEndian.Uint32(hdr[28:32])
	valid := binary.BigEndian.Uint32(hdr[24:28]) == binary.BigEndian.Uint32(hdr[92:96])
	if valid && n > 0 && n <= filePages {
		return n
	}
	return filePages
}
