package litefs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// The helpers prefixed formatTest are shared by the WAL and journal tests.

// formatTestOpen opens dsn on a single SQLite connection and runs stmts on
// it. The returned func closes it (also done at cleanup).
func formatTestOpen(t *testing.T, dsn string, stmts ...string) (*sql.Conn, func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	var once sync.Once
	closeFn := func() {
		once.Do(func() {
			if err := conn.Close(); err != nil {
				t.Errorf("close conn: %v", err)
			}
			if err := db.Close(); err != nil {
				t.Errorf("close db: %v", err)
			}
		})
	}
	t.Cleanup(closeFn)
	formatTestExec(t, conn, stmts...)
	return conn, closeFn
}

// formatTestExec runs each statement in order.
func formatTestExec(t *testing.T, conn *sql.Conn, stmts ...string) {
	t.Helper()
	for _, s := range stmts {
		if _, err := conn.ExecContext(context.Background(), s); err != nil {
			t.Fatalf("exec %q: %v", s, err)
		}
	}
}

// formatTestInt runs a query returning one integer.
func formatTestInt(t *testing.T, conn *sql.Conn, q string) int64 {
	t.Helper()
	var n int64
	if err := conn.QueryRowContext(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	return n
}

// formatTestInsert returns a statement inserting n rows of size-byte blobs into t.
func formatTestInsert(n, size int) string {
	return fmt.Sprintf("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < %d) "+
		"INSERT INTO t(data) SELECT randomblob(%d) FROM c", n, size)
}

// formatTestContentHash hashes the schema and every row of table t.
func formatTestContentHash(t *testing.T, conn *sql.Conn) string {
	t.Helper()
	h := sha256.New()
	formatTestHashRows(t, conn, h, "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master ORDER BY name")
	if formatTestInt(t, conn, "SELECT count(*) FROM sqlite_master WHERE name = 't'") > 0 {
		formatTestHashRows(t, conn, h, "SELECT id, hex(data) FROM t ORDER BY id")
	}
	return hex.EncodeToString(h.Sum(nil))
}

func formatTestHashRows(t *testing.T, conn *sql.Conn, w io.Writer, q string) {
	t.Helper()
	rows, err := conn.QueryContext(context.Background(), q)
	if err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	vals, ptrs := make([]any, len(cols)), make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(w, vals...)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q: %v", q, err)
	}
}

// formatTestCheckCopy opens a private copy of the database image b, requires
// PRAGMA integrity_check to pass and returns its content hash.
func formatTestCheckCopy(t *testing.T, b []byte) string {
	t.Helper()
	return formatTestCheckFiles(t, b, nil)
}

// formatTestCheckFiles is formatTestCheckCopy with a WAL file next to the
// database when wal is not nil, so that SQLite itself recovers the WAL.
func formatTestCheckFiles(t *testing.T, b, wal []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.db")
	formatTestWrite(t, path, b)
	if wal != nil {
		formatTestWrite(t, path+"-wal", wal)
	}
	conn, closeFn := formatTestOpen(t, path)
	defer closeFn()
	var res string
	if err := conn.QueryRowContext(context.Background(), "PRAGMA integrity_check").Scan(&res); err != nil || res != "ok" {
		t.Fatalf("integrity_check: %q, %v", res, err)
	}
	return formatTestContentHash(t, conn)
}

func formatTestRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func formatTestWrite(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func formatTestSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// journalTestCase describes how the database producing a hot journal is set up.
type journalTestCase struct {
	name        string
	journalMode string // DELETE, PERSIST or TRUNCATE
	synchronous string // FULL writes nRec per synced segment, OFF writes 0xFFFFFFFF
	pageSize    int
	psow0       bool // URI psow=0: the journal uses the VFS's 4096-byte sector, not 512
	resector    int  // if set, re-lay the captured journal out with this sector size
	cacheSize   int  // pages cached during the transaction (default 2: spill early and often)
}

// journalTestHot is a hot journal captured in the middle of a transaction
// that has spilled pages into the database file.
type journalTestHot struct {
	pre     []byte // database file before the transaction
	db      []byte // database file while the transaction was open
	journal []byte // journal at that moment
	idle    []byte // journal file left by the previous commit (nil if none)
}

func journalTestCapture(t *testing.T, tc journalTestCase) *journalTestHot {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	dsn := "file:" + path
	if tc.psow0 {
		dsn += "?psow=0"
	}
	conn, _ := formatTestOpen(t, dsn, fmt.Sprintf("PRAGMA page_size=%d", tc.pageSize),
		"PRAGMA journal_mode="+tc.journalMode, "PRAGMA synchronous="+tc.synchronous,
		"CREATE TABLE t(id INTEGER PRIMARY KEY, data BLOB)", "BEGIN", formatTestInsert(400, 200), "COMMIT")
	h := &journalTestHot{pre: formatTestRead(t, path)}
	if b, err := os.ReadFile(path + "-journal"); err == nil {
		h.idle = b
	}
	formatTestExec(t, conn, fmt.Sprintf("PRAGMA cache_size=%d", max(tc.cacheSize, 2)), "BEGIN", "UPDATE t SET data = randomblob(200)", formatTestInsert(400, 300))
	h.db = formatTestRead(t, path)
	h.journal = formatTestRead(t, path+"-journal")
	formatTestExec(t, conn, "ROLLBACK")
	if !bytes.Equal(formatTestRead(t, path), h.pre) {
		t.Fatal("SQLite's own ROLLBACK did not restore the database file byte for byte")
	}
	if bytes.Equal(h.db, h.pre) {
		t.Fatal("the transaction did not spill into the database file")
	}
	return h
}

// journalTestRollback runs RollbackJournal over a copy of the database image
// db and returns the resulting file contents.
func journalTestRollback(t *testing.T, db, j []byte) (out []byte, pages int, rolledBack bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	formatTestWrite(t, path, db)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Like SQLite's unix VFS, count an empty regular file as missing.
	exists := func(name string) bool {
		fi, err := os.Stat(name)
		return err == nil && (!fi.Mode().IsRegular() || fi.Size() > 0)
	}
	pages, rolledBack, err = RollbackJournal(bytes.NewReader(j), int64(len(j)), f, exists)
	if err != nil {
		t.Fatalf("RollbackJournal: %v", err)
	}
	return formatTestRead(t, path), pages, rolledBack
}

// journalTestSQLiteRollback lets SQLite itself roll the hot journal j back
// over a copy of the database image db, and returns the resulting file.
func journalTestSQLiteRollback(t *testing.T, db, j []byte) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	formatTestWrite(t, path, db)
	formatTestWrite(t, path+"-journal", j)
	conn, closeFn := formatTestOpen(t, path)
	var n int64
	// The first read rolls a hot journal back; the result may be corrupt on
	// purpose (a damaged journal), so the query's own outcome is ignored.
	_ = conn.QueryRowContext(context.Background(), "SELECT count(*) FROM sqlite_master").Scan(&n)
	closeFn()
	return formatTestRead(t, path)
}

// journalTestHeaders returns the offsets of the journal headers SQLite would
// find, following nRec from segment to segment.
func journalTestHeaders(j []byte, pageSize int) []int {
	sector := int(binary.BigEndian.Uint32(j[20:]))
	offs := []int{0}
	for off := 0; ; {
		n := binary.BigEndian.Uint32(j[off+8:])
		if n == 0 || n == 0xFFFFFFFF {
			return offs
		}
		end := off + sector + int(n)*(pageSize+8)
		next := (end + sector - 1) / sector * sector
		if next+sector > len(j) || !JournalHeaderIsHot(j[next:]) {
			return offs
		}
		offs, off = append(offs, next), next
	}
}

// journalTestResector re-lays a journal out with another sector size: each
// header moves to a multiple of sector, its records one sector after it.
func journalTestResector(j []byte, pageSize, sector int) []byte {
	old := int(binary.BigEndian.Uint32(j[20:]))
	hdrs := journalTestHeaders(j, pageSize)
	var out []byte
	for i, off := range hdrs {
		body := j[off+old:]
		if i+1 < len(hdrs) {
			n := int(binary.BigEndian.Uint32(j[off+8:]))
			body = j[off+old : off+old+n*(pageSize+8)]
		}
		out = append(out, make([]byte, (sector-len(out)%sector)%sector)...)
		hdr := make([]byte, sector)
		copy(hdr, j[off:off+journalHeaderFields])
		binary.BigEndian.PutUint32(hdr[20:], uint32(sector))
		out = append(append(out, hdr...), body...)
	}
	return out
}

func TestRollbackJournal_RestoresPreTransactionDatabase(t *testing.T) {
	for _, tc := range []journalTestCase{
		{name: "delete mode, full sync, several segments", journalMode: "DELETE", synchronous: "FULL", pageSize: 4096},
		{name: "persist mode, 512-byte pages", journalMode: "PERSIST", synchronous: "FULL", pageSize: 512},
		{name: "truncate mode, sync off, nRec to end of file", journalMode: "TRUNCATE", synchronous: "OFF", pageSize: 4096},
		{name: "65536-byte pages", journalMode: "DELETE", synchronous: "FULL", pageSize: 65536},
		{name: "4096-byte sectors, 1024-byte pages", journalMode: "DELETE", synchronous: "FULL", pageSize: 1024, psow0: true},
		{name: "4096-byte sectors, sync off, 65536-byte pages", journalMode: "PERSIST", synchronous: "OFF", pageSize: 65536, psow0: true},
		{name: "relaid out with 65536-byte sectors", journalMode: "DELETE", synchronous: "FULL", pageSize: 2048, resector: 65536},
		{name: "relaid out with 32-byte sectors", journalMode: "DELETE", synchronous: "FULL", pageSize: 512, resector: 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := journalTestCapture(t, tc)
			j := h.journal
			sector := map[bool]uint32{false: 512, true: 4096}[tc.psow0]
			if got := binary.BigEndian.Uint32(j[20:]); got != sector {
				t.Fatalf("journal sector size %d, want %d", got, sector)
			}
			nRec, segments := binary.BigEndian.Uint32(j[8:]), len(journalTestHeaders(j, tc.pageSize))
			if tc.synchronous == "OFF" && nRec != 0xFFFFFFFF {
				t.Fatalf("nRec = %#x with synchronous=OFF, want 0xFFFFFFFF", nRec)
			}
			if tc.synchronous == "FULL" && (nRec == 0 || segments < 2) {
				t.Fatalf("nRec = %d, %d segments: want a synced first segment followed by more", nRec, segments)
			}
			if tc.resector != 0 {
				j = journalTestResector(j, tc.pageSize, tc.resector)
			}
			if !JournalHeaderIsHot(j) {
				t.Fatal("captured journal is not hot")
			}
			got, pages, rolledBack := journalTestRollback(t, h.db, j)
			if !rolledBack || pages == 0 {
				t.Fatalf("rolledBack=%v pages=%d, want a playback", rolledBack, pages)
			}
			if formatTestSHA(got) != formatTestSHA(h.pre) {
				t.Fatal("rolled-back database differs from the database before the transaction")
			}
			if sq := journalTestSQLiteRollback(t, h.db, j); !bytes.Equal(sq, h.pre) {
				t.Fatal("SQLite's own hot-journal rollback of the same files differs: the test setup is wrong")
			}
		})
	}
}

// journalTestSuperTrailer is what SQLite appends to each journal of a
// multi-database transaction: a record for the lock-byte page holding the
// super-journal name, then its length, checksum and the journal magic.
func journalTestSuperTrailer(name string, pageSize int) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(PendingByte/pageSize+1))
	b = append(b, name...)
	var sum uint32
	for _, c := range []byte(name) {
		sum += uint32(c)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = binary.BigEndian.AppendUint32(b, sum)
	return append(b, JournalMagic...)
}

// Journal edits for table-driven tests.
func journalTestPut(off int, v uint32) func([]byte) []byte {
	return func(j []byte) []byte { binary.BigEndian.PutUint32(j[off:], v); return j }
}

func journalTestFlip(off int) func([]byte) []byte {
	return func(j []byte) []byte { j[off] ^= 0x01; return j }
}

func journalTestCut(n int) func([]byte) []byte {
	return func(j []byte) []byte { return j[:n] }
}

func TestRollbackJournal_StopsWhereSQLiteStops(t *testing.T) {
	const pageSize, sector = 4096, 512
	h := journalTestCapture(t, journalTestCase{journalMode: "DELETE", synchronous: "FULL", pageSize: pageSize, cacheSize: 10})
	if n := binary.BigEndian.Uint32(h.journal[8:]); n < 3 {
		t.Fatalf("first segment has %d records, need 3", n)
	}
	_, full, _ := journalTestRollback(t, h.db, h.journal)
	const rec = pageSize + 8
	record := func(i int) int { return sector + i*rec } // offset of record i of the first segment
	super := filepath.Join(t.TempDir(), "db-mj0123AB9CD")
	missing := filepath.Join(t.TempDir(), "db-mj4567EF901")
	formatTestWrite(t, super, []byte("/elsewhere/child.db-journal\x00"))
	edit := func(f func(j []byte) []byte) func([]byte) []byte { return f }
	put, flip, cut := journalTestPut, journalTestFlip, journalTestCut
	for _, tc := range []struct {
		name       string
		mutate     func([]byte) []byte
		emptyDB    bool
		rolledBack bool
		pages      int // -1: the unmodified journal's count
	}{
		{"unmodified journal", nil, false, true, -1},
		{"zeroed header is not hot", edit(func(j []byte) []byte { clear(j[:journalHeaderFields]); return j }), false, false, 0},
		{"journal shorter than its header", cut(20), false, false, 0},
		{"journal ends inside the third record", cut(record(2) + 100), false, true, 2},
		{"bad checksum in the third record stops playback", flip(record(2) + 4 + pageSize - 200), false, true, 2},
		{"bad checksum in the first record plays nothing", flip(record(0) + 4 + pageSize - 400), false, true, 0},
		{"bytes outside the checksum sample go undetected", flip(record(1) + 4 + 1), false, true, -1},
		{"page number zero stops playback", put(record(1), 0), false, true, 1},
		{"lock-byte page record stops playback", put(record(1), PendingByte/pageSize+1), false, true, 1},
		{"nRec zero in a hot journal means no synced records", put(8, 0), false, true, 0},
		{"page size 0 (before SQLite 3.5.8) means the database's", put(24, 0), false, true, -1},
		{"sector size that is not a power of two", put(20, 1000), false, false, 0},
		{"page size above 65536", put(24, 131072), false, false, 0},
		{"empty database file is never rolled back", nil, true, false, 0},
		{"super-journal named and present", edit(func(j []byte) []byte {
			return append(j, journalTestSuperTrailer(super, pageSize)...)
		}), false, true, -1},
		{"super-journal named but missing", edit(func(j []byte) []byte {
			return append(j, journalTestSuperTrailer(missing, pageSize)...)
		}), false, false, 0},
		{"super-journal name not shaped like SQLite's is ignored", edit(func(j []byte) []byte {
			return append(j, journalTestSuperTrailer(filepath.Join(filepath.Dir(missing), "db-super"), pageSize)...)
		}), false, true, -1},
		{"super-journal name with a bad checksum is ignored", edit(func(j []byte) []byte {
			j = append(j, journalTestSuperTrailer(missing, pageSize)...)
			j[len(j)-9] ^= 0x01
			return j
		}), false, true, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j, db := bytes.Clone(h.journal), h.db
			if tc.mutate != nil {
				j = tc.mutate(j)
			}
			if tc.emptyDB {
				db = nil
			}
			want := tc.pages
			if want < 0 {
				want = full
			}
			got, pages, rolledBack := journalTestRollback(t, db, j)
			if rolledBack != tc.rolledBack || pages != want {
				t.Fatalf("rolledBack=%v pages=%d, want rolledBack=%v pages=%d", rolledBack, pages, tc.rolledBack, want)
			}
			if !rolledBack && !bytes.Equal(got, db) {
				t.Fatal("database changed although nothing was rolled back")
			}
			if sq := journalTestSQLiteRollback(t, db, j); formatTestSHA(got) != formatTestSHA(sq) {
				t.Fatalf("result differs from SQLite's own rollback (%d vs %d bytes)", len(got), len(sq))
			}
		})
	}
}

func TestJournalHeaderIsHot(t *testing.T) {
	persist := journalTestCapture(t, journalTestCase{journalMode: "PERSIST", synchronous: "FULL", pageSize: 4096})
	truncate := journalTestCapture(t, journalTestCase{journalMode: "TRUNCATE", synchronous: "FULL", pageSize: 4096})
	for _, tc := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"journal of an open transaction", persist.journal, true},
		{"first 8 bytes of a live journal", persist.journal[:8], true},
		{"PERSIST journal after commit (zeroed header)", persist.idle, false},
		{"TRUNCATE journal after commit (empty)", truncate.idle, false},
		{"7 bytes of the magic", persist.journal[:7], false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := JournalHeaderIsHot(tc.b); got != tc.want {
				t.Fatalf("JournalHeaderIsHot = %v, want %v", got, tc.want)
			}
		})
	}
	if persist.idle == nil || len(persist.idle) < journalHeaderFields {
		t.Fatal("PERSIST mode left no journal behind")
	}
	if got, _, rolledBack := journalTestRollback(t, persist.db, persist.idle); rolledBack || !bytes.Equal(got, persist.db) {
		t.Fatal("a zeroed PERSIST journal was played back")
	}
}

// journalTestShimSource makes unlink() of a path containing
// $LITEFS_TEST_CRASH_UNLINK end the process at once with status 42: a crash
// exactly at the commit point of a DELETE-mode or multi-database transaction.
const journalTestShimSource = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int unlink(const char *path) {
	const char *pat = getenv("LITEFS_TEST_CRASH_UNLINK");
	if (pat && *pat && strstr(path, pat)) _exit(42);
	int (*next)(const char *) = (int (*)(const char *))dlsym(RTLD_NEXT, "unlink");
	return next(path);
}
`

// journalTestCrasher returns a function running a script in the sqlite3
// command-line shell, crashing at the first unlink of a path containing
// crashOn when that is not empty. It skips the test without gcc or sqlite3.
func journalTestCrasher(t *testing.T) func(db, script, crashOn string) {
	t.Helper()
	cli, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("sqlite3 command-line shell not installed")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	src, shim := filepath.Join(dir, "shim.c"), filepath.Join(dir, "shim.so")
	formatTestWrite(t, src, []byte(journalTestShimSource))
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", shim, src, "-ldl").CombinedOutput(); err != nil {
		t.Skipf("cannot build the crash shim: %v\n%s", err, out)
	}
	return func(db, script, crashOn string) {
		t.Helper()
		cmd := exec.Command(cli, "-bail", db)
		cmd.Stdin = strings.NewReader(script)
		if crashOn != "" {
			cmd.Env = append(os.Environ(), "LD_PRELOAD="+shim, "LITEFS_TEST_CRASH_UNLINK="+crashOn)
		}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case crashOn == "" && err != nil:
			t.Fatalf("sqlite3: %v\n%s", err, out)
		case crashOn != "" && err == nil:
			t.Skipf("LD_PRELOAD shim had no effect on %s (statically linked?)", cli)
		case crashOn != "" && (!errors.As(err, &exit) || exit.ExitCode() != 42):
			t.Fatalf("sqlite3 did not crash at unlink(*%s*): %v\n%s", crashOn, err, out)
		}
	}
}

func TestRollbackJournal_AfterCrashAtCommitPoint(t *testing.T) {
	run := journalTestCrasher(t)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	setup := "PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, data BLOB);\n" + formatTestInsert(300, 200) + ";\n"
	run(a, setup, "")
	run(b, setup, "")
	preA, preB := formatTestRead(t, a), formatTestRead(t, b)
	change := "UPDATE %st SET data = randomblob(250); " + strings.ReplaceAll(formatTestInsert(200, 300), "INTO t", "INTO %st") + ";\n"

	// A single database crashes after writing every page and syncing, just
	// before deleting its journal (the commit point).
	single := filepath.Join(dir, "single.db")
	formatTestWrite(t, single, preA)
	run(single, "BEGIN;\n"+fmt.Sprintf(change, "", "")+"COMMIT;\n", "-journal")
	post, j := formatTestRead(t, single), formatTestRead(t, single+"-journal")
	if bytes.Equal(post, preA) {
		t.Fatal("crashed transaction left the database unchanged")
	}
	if got, _, ok := journalTestRollback(t, post, j); !ok || !bytes.Equal(got, preA) {
		t.Fatalf("single database: rolledBack=%v, restored=%v", ok, bytes.Equal(got, preA))
	}

	// Two databases crash just before the super-journal is deleted (the
	// commit point of a multi-database transaction).
	script := fmt.Sprintf("ATTACH '%s' AS b;\nBEGIN;\n", b) + fmt.Sprintf(change, "main.", "main.") +
		fmt.Sprintf(change, "b.", "b.") + "COMMIT;\n"
	run(a, script, "-mj")
	supers, _ := filepath.Glob(a + "-mj*")
	if len(supers) != 1 {
		t.Fatalf("super-journals left behind: %v", supers)
	}
	for _, db := range []struct {
		path string
		pre  []byte
	}{{a, preA}, {b, preB}} {
		post, j := formatTestRead(t, db.path), formatTestRead(t, db.path+"-journal")
		if name, err := readSuperJournalName(bytes.NewReader(j), int64(len(j))); err != nil || name != supers[0] {
			t.Fatalf("%s: super-journal name %q, %v; want %q", db.path, name, err, supers[0])
		}
		if got, _, ok := journalTestRollback(t, post, j); !ok || !bytes.Equal(got, db.pre) {
			t.Fatalf("%s with its super-journal present: rolledBack=%v, restored=%v", db.path, ok, bytes.Equal(got, db.pre))
		}
		if !bytes.Equal(journalTestSQLiteRollback(t, post, j), db.pre) {
			t.Fatalf("%s: SQLite itself did not roll back", db.path)
		}
	}
	if err := os.Remove(supers[0]); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{a, b} {
		post, j := formatTestRead(t, path), formatTestRead(t, path+"-journal")
		if got, pages, ok := journalTestRollback(t, post, j); ok || pages != 0 || !bytes.Equal(got, post) {
			t.Fatalf("%s without its super-journal: rolledBack=%v pages=%d, want the committed database untouched", path, ok, pages)
		}
		if !bytes.Equal(journalTestSQLiteRollback(t, post, j), post) {
			t.Fatalf("%s: SQLite itself rolled back a committed multi-database transaction", path)
		}
	}
}
