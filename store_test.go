package litefs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"
)

// makeSQLiteFile creates a real SQLite database file with n rows of ~200
// bytes (rollback journal mode) and returns its bytes.
func makeSQLiteFile(t testing.TB, n int) []byte {
	t.Helper()
	return makeSQLiteFileOf(t, n, "randomblob(200)")
}

// makeSQLiteFileOf returns a rollback-journal database file with n rows of
// the blob expression blob, inserted in one transaction.
func makeSQLiteFileOf(t testing.TB, n int, blob string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	sdb, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE")
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	sdb.SetMaxOpenConns(1)
	stmts := []string{`CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`, `BEGIN`,
		`WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < ?) INSERT INTO t(v) SELECT ` + blob + ` FROM c`, `COMMIT`}
	for _, q := range stmts {
		var args []any
		if strings.Contains(q, "?") {
			args = append(args, n)
		}
		if _, err := sdb.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := sdb.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeTx plays one rollback-journal transaction that leaves the database
// file equal to content, the way SQLite does: hot journal, page writes,
// truncate, journal deletion (the commit point).
func writeTx(t testing.TB, db *DB, content []byte) {
	t.Helper()
	if err := db.Create(FileJournal); err != nil {
		t.Fatal(err)
	}
	hdr := append(append([]byte{}, JournalMagic...), make([]byte, 20)...)
	if _, err := db.WriteAt(FileJournal, hdr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteAt(FileDatabase, content, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.Truncate(FileDatabase, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if err := db.Remove(FileJournal); err != nil {
		t.Fatal(err)
	}
}

// quietLogger drops log lines so test output shows failures only.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTestStore(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenStore(context.Background(), StoreOptions{Dir: dir, StrictVerify: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestCommit_PositionChecksumMatchesFile(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	db, err := s.CreateDB("a.db")
	if err != nil {
		t.Fatal(err)
	}
	for i, rows := range []int{10, 40, 5} {
		content := makeSQLiteFile(t, rows)
		writeTx(t, db, content)
		pos := db.Pos()
		if pos.TXID != ltx.TXID(i+1) {
			t.Fatalf("after tx %d: txid %s", i+1, pos.TXID)
		}
		want, err := ltx.ChecksumReader(strings.NewReader(string(content)), 4096)
		if err != nil {
			t.Fatal(err)
		}
		if pos.PostApplyChecksum != want {
			t.Fatalf("after tx %d: position checksum %s, file checksum %s", i+1, pos.PostApplyChecksum, want)
		}
	}
}

func TestCommit_UnchangedContentWritesNoLTX(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	db, err := s.CreateDB("a.db")
	if err != nil {
		t.Fatal(err)
	}
	content := makeSQLiteFile(t, 10)
	writeTx(t, db, content)
	writeTx(t, db, content) // a rolled-back transaction looks like this
	if pos := db.Pos(); pos.TXID != 1 {
		t.Fatalf("txid %s, want 1: a transaction that changed nothing was recorded", pos.TXID)
	}
	files, err := listLTX(db.LTXDir())
	if err != nil || len(files) != 1 {
		t.Fatalf("ltx files %v (err %v), want 1", files, err)
	}
}

func TestRecover_ReappliesNewestLTXTheDatabaseLost(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	db, _ := s.CreateDB("a.db")
	first, second := makeSQLiteFile(t, 10), makeSQLiteFile(t, 30)
	writeTx(t, db, first)
	writeTx(t, db, second)
	want := db.Pos()
	s.Close()

	// The database file lost the last transaction (power loss after the LTX
	// file was made durable but before the database file was).
	if err := os.WriteFile(filepath.Join(dir, "dbs", "a.db", "database"), first, 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir)
	if got := s2.DB("a.db").Pos(); got != want {
		t.Fatalf("position after recovery %v, want %v", got, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "dbs", "a.db", "database"))
	if string(b) != string(second) {
		t.Fatal("database file does not hold the newest transaction after recovery")
	}
}

func TestRecover_RefusesDatabaseChangedOutsideHistory(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	db, _ := s.CreateDB("a.db")
	first := makeSQLiteFile(t, 40)
	writeTx(t, db, first)
	second := append([]byte(nil), first...)
	second[4096*2+50] ^= 0xff // the newest transaction changes page 3 only
	writeTx(t, db, second)
	s.Close()

	// Page 5 is outside the newest transaction: re-applying it cannot help.
	path := filepath.Join(dir, "dbs", "a.db", "database")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("corrupted!"), 4*4096+100); err != nil {
		t.Fatal(err)
	}
	f.Close()

	_, err = OpenStore(context.Background(), StoreOptions{Dir: dir, Logger: quietLogger()})
	if !errors.Is(err, ErrChecksumMismatch) {
		t.Fatalf("open error %v, want a checksum mismatch", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `"a.db"`) || strings.Count(msg, "checksum") < 1 {
		t.Fatalf("error does not name the database: %s", msg)
	}
	var hexes int
	for _, w := range strings.Fields(msg) {
		if len(strings.Trim(w, ";,.")) == 16 {
			hexes++
		}
	}
	if hexes < 2 {
		t.Fatalf("error does not give both checksums: %s", msg)
	}
}

func TestRecover_RemovesDamagedNewestLTX(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	db, _ := s.CreateDB("a.db")
	first := makeSQLiteFile(t, 10)
	writeTx(t, db, first)
	writeTx(t, db, makeSQLiteFile(t, 20))
	s.Close()

	// A power loss kept the rename of TXID 2 but not its data, and the
	// database file never got the transaction either.
	ltxPath := filepath.Join(dir, "dbs", "a.db", "ltx", ltxFileName(2, 2))
	if err := os.WriteFile(ltxPath, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "dbs", "a.db", "database"), first, 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir)
	if got := s2.DB("a.db").Pos().TXID; got != 1 {
		t.Fatalf("txid after recovery %s, want 1", got)
	}
	if _, err := os.Stat(ltxPath); !os.IsNotExist(err) {
		t.Fatalf("damaged ltx file still present (%v)", err)
	}
}

func TestEnforceRetention_KeepsNewestFile(t *testing.T) {
	tests := []struct {
		name      string
		txs       int
		cutoff    time.Duration // relative to now
		wantFiles int
	}{
		{"nothing old", 3, -time.Hour, 3},
		{"all old keeps newest", 3, time.Hour, 1},
		{"single file kept", 1, time.Hour, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestStore(t, t.TempDir())
			db, _ := s.CreateDB("a.db")
			for i := 0; i < tt.txs; i++ {
				writeTx(t, db, makeSQLiteFile(t, 5+i))
			}
			if err := db.EnforceRetention(time.Now().Add(tt.cutoff)); err != nil {
				t.Fatal(err)
			}
			files, err := listLTX(db.LTXDir())
			if err != nil {
				t.Fatal(err)
			}
			if len(files) != tt.wantFiles {
				t.Fatalf("%d files left, want %d", len(files), tt.wantFiles)
			}
			if last := files[len(files)-1]; last.max != ltx.TXID(tt.txs) {
				t.Fatalf("newest file %v was removed", last)
			}
		})
	}
}

func TestPageChecksum_EqualsLTXChecksumPage(t *testing.T) {
	for _, size := range []int{512, 4096, 65536} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		for _, pgno := range []uint32{1, 2, 1 << 20} {
			if got, want := PageChecksum(pgno, data), ltx.ChecksumPage(pgno, data); got != want {
				t.Fatalf("size %d pgno %d: %s != %s", size, pgno, got, want)
			}
		}
	}
}

func TestValidateName_RefusesUnsafeNames(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a.db", true}, {"", false}, {".", false}, {"..", false}, {"a/b", false}, {"../x", false},
		{"a\x00b", false}, {strings.Repeat("x", 255), true}, {strings.Repeat("x", 256), false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			err := ValidateName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v is not ErrInvalidName", err)
			}
		})
	}
}

func TestRecover_CompletesAHalfAppliedNewestTransaction(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	db, _ := s.CreateDB("a.db")
	first, second := makeSQLiteFile(t, 40), makeSQLiteFile(t, 45)
	writeTx(t, db, first)
	writeTx(t, db, second)
	want := db.Pos()
	s.Close()

	// A crash while the newest transaction was being written: some of its
	// pages landed, the rest did not.
	half := append(append([]byte(nil), second[:len(second)/2]...), first[len(second)/2:]...)
	if err := os.WriteFile(filepath.Join(dir, "dbs", "a.db", "database"), half, 0o644); err != nil {
		t.Fatal(err)
	}
	s2 := openTestStore(t, dir)
	if got := s2.DB("a.db").Pos(); got != want {
		t.Fatalf("position after recovery %v, want %v", got, want)
	}
}

// TestSetReplica_EndsHaltsWhenThePrimaryChanges: a primary that becomes a
// replica drops the HALTs it granted (SPEC 8.3).
func TestSetReplica_EndsHaltsWhenThePrimaryChanges(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	db, err := s.CreateDB("a.db")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.AcquireHalt(context.Background(), 1, 2, false); err != nil {
		t.Fatal(err)
	}
	s.SetReplica(&PrimaryInfo{Hostname: "other", AdvertiseURL: "http://127.0.0.1:1"})
	if l, held := db.HaltHolder(); held {
		t.Fatalf("HALT %+v still held after this node became a replica", l)
	}
	if db.Locks(FileSHM).Held(LockWrite, WALWriteLockByte, WALWriteLockByte) || db.Locks(FileDatabase).Held(LockWrite, ReservedByte, ReservedByte) {
		t.Fatal("the dropped HALT still holds SQLite's write locks")
	}
}

// TestSetReplica_VoidsTheHaltOfAReplicaWhenThePrimaryChanges: a HALT this
// replica holds from its old primary is void once another node is primary.
func TestSetReplica_VoidsTheHaltOfAReplicaWhenThePrimaryChanges(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	db, err := s.CreateDB("a.db")
	if err != nil {
		t.Fatal(err)
	}
	s.SetReplica(&PrimaryInfo{Hostname: "old", AdvertiseURL: "http://127.0.0.1:1"})
	h := &remoteHalt{id: 7, stop: func() {}}
	db.rhalt.cur = h
	s.SetReplica(&PrimaryInfo{Hostname: "old", AdvertiseURL: "http://127.0.0.1:1"})
	if h.void != nil {
		t.Fatalf("the HALT was voided although the primary did not change: %v", h.void)
	}
	s.SetReplica(&PrimaryInfo{Hostname: "new", AdvertiseURL: "http://127.0.0.1:2"})
	if !errors.Is(h.void, ErrHaltVoid) {
		t.Fatalf("HALT from the old primary: void = %v, want ErrHaltVoid", h.void)
	}
}

func TestRecover_KeepsAFileThatIsNotADatabase(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
	}{
		{"short text", []byte("hello\n")},
		{"a page of text", []byte(strings.Repeat("not a database ", 300))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir)
			db, err := s.CreateDB("notes")
			if err != nil {
				t.Fatal(err)
			}
			writeTx(t, db, tt.content) // logged, not recorded
			s.Close()

			s2 := openTestStore(t, dir)
			db = s2.DB("notes")
			if db == nil {
				t.Fatal("the file is gone after a restart")
			}
			if pos := db.Pos(); pos.TXID != 0 {
				t.Fatalf("position %v: content that is not SQLite was recorded", pos)
			}
			b, err := os.ReadFile(filepath.Join(dir, "dbs", "notes", "database"))
			if err != nil || string(b) != string(tt.content) {
				t.Fatalf("content after restart %q (err %v), want it unchanged", b, err)
			}
			// It becomes a database: its first commit records it whole.
			content := makeSQLiteFile(t, 10)
			writeTx(t, db, content)
			want, err := ltx.ChecksumReader(strings.NewReader(string(content)), 4096)
			if err != nil {
				t.Fatal(err)
			}
			if pos := db.Pos(); pos.TXID != 1 || pos.PostApplyChecksum != want {
				t.Fatalf("position %v after the first SQLite commit, want TXID 1 checksum %s", pos, want)
			}
		})
	}
}
