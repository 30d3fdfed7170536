package litefs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/superfly/ltx"
)

// Recovery (SPEC section 6). When the daemon starts no application has the
// database open, so the daemon may do what SQLite's first connection would:
//
//  1. the LTX history is read; a damaged newest file is set aside;
//  2. a hot rollback journal is played back;
//  3. WAL transactions are checkpointed into the database file up to the one
//     that matches the history; later ones (committed to the WAL but not yet
//     recorded when the daemon died) become new LTX files;
//  4. the database file's checksum must then equal the history's: if it
//     equals the newest LTX's pre-apply checksum the newest LTX is applied
//     again; any other mismatch is an error naming both checksums.

// lastLTX is the newest valid LTX file of a database.
type lastLTX struct {
	path    string
	hdr     ltx.Header
	trailer ltx.Trailer
}

// recover brings the database's files and history into agreement.
func (db *DB) recover() error {
	if err := os.MkdirAll(db.LTXDir(), 0o755); err != nil {
		return fmt.Errorf("create ltx dir: %w", err)
	}
	for _, dir := range []string{db.dir, db.LTXDir()} {
		if err := removeTempFiles(dir); err != nil {
			return err
		}
	}
	last, err := db.loadHistory()
	if err != nil {
		return err
	}
	if wrote, err := db.recoverSnapshotMarker(last); err != nil {
		return err
	} else if wrote {
		if last, err = db.loadHistory(); err != nil {
			return err
		}
	}
	if err := db.openFile(FileDatabase, true); err != nil {
		return err
	}
	if err := db.rollbackHotJournal(); err != nil {
		return err
	}
	if last != nil {
		db.pos = ltx.Pos{TXID: last.hdr.MaxTXID, PostApplyChecksum: last.trailer.PostApplyChecksum}
		db.pageSize = last.hdr.PageSize
	}
	extra, err := db.checkpointWALPrefix(last != nil)
	if err != nil {
		return err
	}
	if err := db.verifyAgainstHistory(last); err != nil {
		return err
	}
	if err := db.commitWALExtra(extra); err != nil {
		return err
	}
	for _, k := range []FileKind{FileWAL, FileSHM} {
		db.closeFile(k)
		if err := os.Remove(db.path(k)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove stale %s: %w", k, err)
		}
	}
	db.resetWAL()
	db.log.Info("database opened", "txid", db.pos.TXID.String(), "checksum", db.pos.PostApplyChecksum.String(), "pages", db.sums.PageN())
	return nil
}

// loadHistory returns the newest LTX file that verifies, removing newer
// damaged ones (a write cut short by a power loss).
func (db *DB) loadHistory() (*lastLTX, error) {
	files, err := listLTX(db.LTXDir())
	if err != nil {
		return nil, err
	}
	for i := len(files) - 1; i >= 0; i-- {
		path := filepath.Join(db.LTXDir(), ltxFileName(files[i].min, files[i].max))
		hdr, trailer, err := readLTXFile(path, nil)
		if err == nil {
			return &lastLTX{path: path, hdr: hdr, trailer: trailer}, nil
		}
		db.log.Warn("removing damaged ltx file", "file", filepath.Base(path), "error", err)
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove damaged ltx file: %w", err)
		}
	}
	return nil, nil
}

// rollbackHotJournal plays back and removes a hot rollback journal.
func (db *DB) rollbackHotJournal() error {
	j, err := os.Open(db.path(FileJournal))
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	defer j.Close()
	fi, err := j.Stat()
	if err != nil {
		return fmt.Errorf("stat journal: %w", err)
	}
	// Super-journals live with the local files; SQLite treats an empty one
	// as missing.
	superExists := func(name string) bool {
		fi, err := os.Stat(filepath.Join(db.opts.Dir, "local", filepath.Base(name)))
		return err == nil && fi.Size() > 0
	}
	pages, rolledBack, err := RollbackJournal(j, fi.Size(), db.file(FileDatabase), superExists)
	if err != nil {
		return fmt.Errorf("roll back hot journal: %w", err)
	}
	if rolledBack {
		db.log.Info("hot journal rolled back", "pages", pages)
	}
	if err := os.Remove(db.path(FileJournal)); err != nil {
		return fmt.Errorf("remove journal: %w", err)
	}
	return nil
}

// walCommits reads every committed transaction of the WAL file, if any.
func (db *DB) walCommits() (*os.File, WALHeader, []WALCommit, error) {
	f, err := os.Open(db.path(FileWAL))
	if os.IsNotExist(err) {
		return nil, WALHeader{}, nil, nil
	} else if err != nil {
		return nil, WALHeader{}, nil, fmt.Errorf("open wal: %w", err)
	}
	var hb [WALHeaderSize]byte
	if _, err := f.ReadAt(hb[:], 0); err != nil {
		f.Close()
		return nil, WALHeader{}, nil, nil // empty or partial header: no transactions
	}
	hdr, err := ParseWALHeader(hb[:])
	if err != nil {
		f.Close()
		return nil, WALHeader{}, nil, nil
	}
	var commits []WALCommit
	r := NewWALReader(f, hdr)
	for {
		c, ok, err := r.Next()
		if err != nil {
			f.Close()
			return nil, hdr, nil, fmt.Errorf("read wal: %w", err)
		} else if !ok {
			break
		}
		commits = append(commits, c)
	}
	return f, hdr, commits, nil
}

// walExtra holds WAL transactions that are newer than the LTX history.
type walExtra struct {
	f       *os.File
	hdr     WALHeader
	commits []WALCommit
}

// checkpointWALPrefix writes into the database file the WAL transactions
// that the history already holds, and returns the newer ones.
func (db *DB) checkpointWALPrefix(haveHistory bool) (*walExtra, error) {
	f, hdr, commits, err := db.walCommits()
	if err != nil || f == nil {
		return nil, err
	}
	if len(commits) == 0 {
		f.Close()
		return nil, nil
	}
	match := 0
	if haveHistory {
		if match, err = db.matchWAL(f, hdr, commits); err != nil {
			f.Close()
			return nil, err
		}
	}
	buf := make([]byte, hdr.PageSize)
	dbf := db.file(FileDatabase)
	for _, c := range commits[:match] {
		if err := checkpointCommit(dbf, f, hdr, c, buf); err != nil {
			f.Close()
			return nil, err
		}
	}
	if match > 0 {
		db.log.Info("wal checkpointed", "transactions", match)
	}
	return &walExtra{f: f, hdr: hdr, commits: commits[match:]}, nil
}

// matchWAL returns how many WAL transactions, laid over the database file,
// reproduce the history's checksum. If none does, every transaction is
// checkpointed and verification decides.
func (db *DB) matchWAL(f *os.File, hdr WALHeader, commits []WALCommit) (int, error) {
	dbf := db.file(FileDatabase)
	fi, err := dbf.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat database: %w", err)
	}
	var sums pageChecksums
	if err := sums.Load(dbf, fi.Size(), hdr.PageSize, nil); err != nil {
		return 0, fmt.Errorf("checksum database: %w", err)
	}
	match := -1
	if sums.Checksum() == db.pos.PostApplyChecksum {
		match = 0
	}
	buf := make([]byte, hdr.PageSize)
	for i, c := range commits {
		if err := overlayWALCommit(&sums, f, c, buf); err != nil {
			return 0, err
		}
		if sums.Checksum() == db.pos.PostApplyChecksum {
			match = i + 1
		}
	}
	if match < 0 {
		db.log.Warn("wal does not line up with the ltx history; checkpointing all of it")
		return len(commits), nil
	}
	return match, nil
}

// checkpointCommit copies one WAL transaction's pages into the database file.
func checkpointCommit(dbf, wal *os.File, hdr WALHeader, c WALCommit, buf []byte) error {
	for pgno, off := range c.Pages {
		if pgno > c.Commit {
			continue
		}
		if _, err := wal.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read wal page %d: %w", pgno, err)
		}
		if _, err := dbf.WriteAt(buf, int64(pgno-1)*int64(hdr.PageSize)); err != nil {
			return fmt.Errorf("checkpoint page %d: %w", pgno, err)
		}
	}
	if err := dbf.Truncate(int64(c.Commit) * int64(hdr.PageSize)); err != nil {
		return fmt.Errorf("checkpoint truncate: %w", err)
	}
	return nil
}

// verifyAgainstHistory loads the page checksums from the database file and
// checks them against the newest LTX file, re-applying it if the database
// file lost it.
func (db *DB) verifyAgainstHistory(last *lastLTX) error {
	err := db.loadSums()
	if last == nil && errors.Is(err, errNoSQLiteHeader) {
		// A file created through the mount that never held a SQLite
		// database (no history): kept and served as it is, not replicated,
		// as while the daemon ran. Its first valid commit records it whole.
		db.log.Warn("file is not a SQLite database: kept, not replicated until it becomes one", "error", err)
		db.forceFull = true
		return nil
	}
	if err != nil {
		return err
	}
	if last == nil {
		if db.sums.PageN() == 0 {
			return nil
		}
		db.log.Info("database has no ltx history: recording a snapshot")
		db.forceFull = true
		return db.commitRollback()
	}
	got := db.sums.Checksum()
	if got == db.pos.PostApplyChecksum {
		return nil
	}
	// The database file lost all or part of the newest transaction (a power
	// loss, or a replica killed half-way through applying it). An LTX file
	// holds whole pages, so applying it again over such a state gives the
	// committed state; the checksum then proves it. A file changed anywhere
	// else still fails, and is never served.
	db.log.Warn("database file does not match its history; applying the newest ltx file again",
		"txid", last.hdr.MaxTXID.String(), "file_checksum", got.String(), "history_checksum", db.pos.PostApplyChecksum.String())
	if _, _, err := applyLTXFile(last.path, db.file(FileDatabase)); err != nil {
		return fmt.Errorf("re-apply %s: %w", filepath.Base(last.path), err)
	}
	if err := db.loadSums(); err != nil {
		return err
	}
	if db.sums.Checksum() == db.pos.PostApplyChecksum {
		db.log.Info("database recovered from its newest ltx file", "txid", last.hdr.MaxTXID.String())
		return db.syncFile(FileDatabase)
	}
	return fmt.Errorf("database %q: %w: the database file has checksum %s but its LTX history (TXID %s) says %s; "+
		"the file was changed outside litefs or damaged: restore it from a replica or a backup",
		db.name, ErrChecksumMismatch, got, db.pos.TXID, db.pos.PostApplyChecksum)
}

// loadSums computes the page checksums of the database file.
func (db *DB) loadSums() error {
	progress := func(done, total uint32) {
		if total > 262144 {
			db.log.Info("checksumming database", "pages", done, "of", total)
		}
	}
	ps, err := loadFileSums(&db.sums, db.file(FileDatabase), db.pageSize, progress)
	if err != nil {
		return fmt.Errorf("database %q: %w", db.name, err)
	}
	if db.pageSize == 0 {
		db.pageSize = ps
	}
	return nil
}

// loadFileSums computes into sums the page checksums of the SQLite database
// file f and returns its page size (ps when the file is empty).
func loadFileSums(sums *pageChecksums, f *os.File, ps uint32, progress func(done, total uint32)) (uint32, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat database: %w", err)
	}
	if fi.Size() > 0 {
		var hdr [100]byte
		if _, err := f.ReadAt(hdr[:], 0); err != nil && err != io.EOF {
			return 0, fmt.Errorf("read database header: %w", err)
		}
		if ps, err = parsePageSize(hdr[:]); err != nil {
			return 0, err
		}
	}
	if err := sums.Load(f, fi.Size(), ps, progress); err != nil {
		return 0, fmt.Errorf("checksum database: %w", err)
	}
	return ps, nil
}

// commitWALExtra records WAL transactions newer than the history as LTX
// files and checkpoints them.
func (db *DB) commitWALExtra(extra *walExtra) error {
	if extra == nil {
		return nil
	}
	defer extra.f.Close()
	buf := make([]byte, extra.hdr.PageSize)
	for _, c := range extra.commits {
		if err := db.commitTx(db.walTx(extra.f, extra.hdr, c), writeDurable); err != nil {
			return fmt.Errorf("record wal transaction: %w", err)
		}
		if err := checkpointCommit(db.file(FileDatabase), extra.f, extra.hdr, c, buf); err != nil {
			return err
		}
	}
	if len(extra.commits) > 0 {
		db.log.Info("wal transactions recorded after restart", "transactions", len(extra.commits))
	}
	return db.syncFile(FileDatabase)
}

// syncFile fsyncs a backing file unless skip-sync is set.
func (db *DB) syncFile(kind FileKind) error {
	if f := db.file(kind); f != nil && !db.opts.SkipSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", kind, err)
		}
	}
	return nil
}
