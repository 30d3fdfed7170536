package litefs

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mountTestTmpfs mounts a tmpfs of size (e.g. "64k") on a fresh directory
// and unmounts it in t.Cleanup. It needs root; without it the test fails
// under CI=true and is skipped otherwise.
func mountTestTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// walTestOneCommit returns a database file in WAL mode and a WAL holding
// one more committed transaction (an INSERT), as SQLite wrote them.
func walTestOneCommit(t *testing.T) (base, wal []byte) {
	t.Helper()
	path, conn, closeFn := walTestOpenWAL(t, 4096)
	defer closeFn()
	formatTestExec(t, conn, "CREATE TABLE t(v)", "PRAGMA wal_checkpoint(TRUNCATE)")
	base = formatTestRead(t, path)
	formatTestExec(t, conn, "INSERT INTO t VALUES (randomblob(3000))")
	return base, formatTestRead(t, path+"-wal")
}

// The WAL fsync of a commit (synchronous=FULL: the writer holds the WAL
// write lock) is where the transaction is recorded. When its LTX file
// cannot be written the fsync fails, SQLite rolls back, and litefs must
// record nothing and void the commit frame: otherwise the next connection
// to rebuild the WAL-index, or litefs's recovery, would find it committed.
func TestSync_WALCommitWhoseLTXFailsIsVoided(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	db, err := s.CreateDB("a.db")
	if err != nil {
		t.Fatal(err)
	}
	base, wal := walTestOneCommit(t)
	writeTx(t, db, base)
	before := db.Pos()

	const owner = 7
	if !db.locks[FileSHM].TryLock(owner, owner, 0, LockWrite, WALWriteLockByte, WALWriteLockByte) {
		t.Fatal("could not take the WAL write lock")
	}
	if err := db.Create(FileWAL); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteAt(FileWAL, wal, 0); err != nil {
		t.Fatal(err)
	}
	// Make the LTX directory unusable: the LTX write fails as on a full disk.
	ltxDir := db.LTXDir()
	saved := ltxDir + ".saved"
	if err := os.Rename(ltxDir, saved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ltxDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := db.Sync(FileWAL); err == nil {
		t.Fatal("WAL fsync succeeded although the LTX file could not be written")
	}
	if got := db.Pos(); got != before {
		t.Fatalf("position moved %s -> %s for a commit whose fsync failed", before, got)
	}
	onDisk, err := os.ReadFile(filepath.Join(db.dir, WALFileName))
	if err != nil {
		t.Fatal(err)
	}
	if c := walTestCommits(t, onDisk, walTestHeader(t, onDisk)); len(c) != 0 {
		t.Fatalf("the WAL still holds %d valid commit(s) after the failed fsync", len(c))
	}

	// Space is back: nothing is recorded late, and a new commit works.
	if err := os.Remove(ltxDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(saved, ltxDir); err != nil {
		t.Fatal(err)
	}
	if err := db.Sync(FileWAL); err != nil {
		t.Fatal(err)
	}
	if err := db.BeforeUnlock(FileSHM, owner, WALWriteLockByte, WALWriteLockByte, false); err != nil {
		t.Fatal(err)
	}
	if got := db.Pos(); got != before {
		t.Fatalf("position moved %s -> %s after the failed commit", before, got)
	}
	if _, err := db.WriteAt(FileWAL, wal[WALHeaderSize:], WALHeaderSize); err != nil {
		t.Fatal(err)
	}
	if err := db.Sync(FileWAL); err != nil {
		t.Fatal(err)
	}
	if got := db.Pos(); got.TXID != before.TXID+1 {
		t.Fatalf("position %s after a good commit, want TXID %d", got, before.TXID+1)
	}
}

// breakLTXDir replaces db's LTX directory by a file, so every LTX write
// fails as on a full disk, and returns the function that restores it.
func breakLTXDir(t *testing.T, db *DB) (restore func()) {
	t.Helper()
	dir := db.LTXDir()
	if err := os.Rename(dir, dir+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(dir+".saved", dir); err != nil {
			t.Fatal(err)
		}
	}
}

// A WAL transaction SQLite committed (synchronous=NORMAL: no fsync, the
// WAL-index is advanced) whose recording failed at the unlock cannot be
// undone; SQLite ignores the unlock's error. Until it is recorded, every
// further WAL write is refused, so SQLite reports the next commits as failed
// (SQLITE_FULL for ENOSPC) rather than committing more that litefs cannot
// record; once space is back the write records it and goes through.
func TestWALWrite_RefusedWhileACommittedTransactionIsUnrecorded(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	db, err := s.CreateDB("a.db")
	if err != nil {
		t.Fatal(err)
	}
	base, wal := walTestOneCommit(t)
	// The database file as SQLite left it, not yet recorded: the WAL's
	// first transaction will be TXID 1, a full one (its LTX file is encoded
	// through a temporary file, which fails at the unlock).
	if _, err := db.file(FileDatabase).WriteAt(base, 0); err != nil {
		t.Fatal(err)
	}
	const owner = 7
	if !db.locks[FileSHM].TryLock(owner, owner, 0, LockWrite, WALWriteLockByte, WALWriteLockByte) {
		t.Fatal("could not take the WAL write lock")
	}
	if err := db.Create(FileWAL); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteAt(FileWAL, wal, 0); err != nil {
		t.Fatal(err)
	}
	restore := breakLTXDir(t, db)
	if err := db.BeforeUnlock(FileSHM, owner, WALWriteLockByte, WALWriteLockByte, false); err == nil {
		t.Fatal("recording at the unlock succeeded without an LTX directory")
	}
	db.locks[FileSHM].TryLock(owner, owner, 0, LockUnlock, WALWriteLockByte, WALWriteLockByte)
	if db.Pos().TXID != 0 {
		t.Fatalf("position %s, want nothing recorded", db.Pos())
	}
	if _, err := db.WriteAt(FileWAL, wal[WALHeaderSize:], WALHeaderSize); err == nil {
		t.Fatal("a WAL write went through while a committed transaction is unrecorded")
	}
	restore()
	if _, err := db.WriteAt(FileWAL, wal[WALHeaderSize:], WALHeaderSize); err != nil {
		t.Fatalf("WAL write once the LTX directory is back: %v", err)
	}
	if db.Pos().TXID != 1 {
		t.Fatalf("position %s, want the committed transaction recorded (TXID 1)", db.Pos())
	}
}
