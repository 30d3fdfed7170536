package tests

import (
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Side files copied into the mount before their database (issue 14 item 5,
// SQLite's incrvacuum3.test case 1.1.4.3; docs/ARCHITECTURE.md "Names in
// the mount"): the side file must stay visible, become the database's side
// file once the database exists, and SQLite must then see it as on a local
// disk: a hot journal rolled back, a WAL's committed frames recovered. The
// replica receives that content.

// sideFileCase is one way of leaving a side file beside a database.
type sideFileCase struct {
	name   string
	suffix string                                 // the side file copied in first
	params string                                 // source database DSN parameters
	open   func(t *testing.T, conn *sql.Conn) int // leaves the side file in place; returns rows wanted
	txid   uint64                                 // the history it must leave on the primary
}

var sideFileCases = []sideFileCase{
	// One transaction: the rolled-back content, whole. The half-written
	// copy is never recorded.
	{"hot journal is rolled back", "-journal", "_journal_mode=DELETE&_sync=FULL", openHotJournal, 1},
	// The database file as copied, whole, then the WAL's two transactions.
	{"wal frames are recovered", "-wal", "_journal_mode=WAL&_sync=FULL", openLiveWAL, 3},
}

// openHotJournal fills the table, then changes every row in a transaction
// whose pages spill into the database file: the journal is hot.
func openHotJournal(t *testing.T, conn *sql.Conn) int {
	connExec(t, conn, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	connExec(t, conn, fillRows(200, 1000))
	connExec(t, conn, "PRAGMA cache_size=2")
	connExec(t, conn, "BEGIN")
	connExec(t, conn, "UPDATE t SET v = randomblob(1500)")
	connExec(t, conn, "DELETE FROM t WHERE id > 50")
	return 200
}

// openLiveWAL leaves a database file with a checkpointed base and later
// transactions committed in the WAL only (never checkpointed while the
// connection stays open).
func openLiveWAL(t *testing.T, conn *sql.Conn) int {
	connExec(t, conn, "PRAGMA wal_autocheckpoint=0")
	connExec(t, conn, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	connExec(t, conn, fillRows(150, 1000))
	connExec(t, conn, "PRAGMA wal_checkpoint(TRUNCATE)")
	connExec(t, conn, "UPDATE t SET v = randomblob(800) WHERE id IN (7, 80)")
	connExec(t, conn, "INSERT INTO t SELECT id + 150, v FROM t WHERE id <= 50")
	return 200
}

func fillRows(n, size int) string {
	return "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < " + strconv.Itoa(n) +
		") INSERT INTO t SELECT i, randomblob(" + strconv.Itoa(size) + ") FROM c"
}

func TestSideFiles_CopiedBeforeDatabaseAreAdopted(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	var names []string
	for i, tc := range sideFileCases {
		name := "restored" + strconv.Itoa(i) + ".db"
		names = append(names, name)
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src.db")
			conn := openSourceConn(t, src, tc.params)
			rows := tc.open(t, conn)
			// The same copy on a plain directory is the reference: it
			// proves the side file matters (and what SQLite makes of it).
			plain := filepath.Join(t.TempDir(), "plain.db")
			mnt := p.DBPath(name)
			for _, dst := range []string{plain, mnt} {
				copyFile(t, src+tc.suffix, dst+tc.suffix)
				copyFile(t, src, dst)
			}
			requireListedSideFile(t, p.MountDir, name+tc.suffix, fileSize(t, src+tc.suffix))
			if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil && tc.suffix == "-journal" {
				t.Fatalf("rollback source: %v", err)
			}
			want := checkedDigest(t, plain)
			if !strings.HasPrefix(want, strconv.Itoa(rows)+"/") {
				t.Fatalf("reference copy on a plain directory: digest %s, want %d rows: the test did not leave the side file it meant to", want, rows)
			}
			if got := checkedDigest(t, mnt); got != want {
				t.Fatalf("in the mount: digest %s, want %s (the plain directory's)", got, want)
			}
		})
	}
	if t.Failed() {
		return
	}
	waitConverged(t, ConvergeTimeout, p, rs, names...)
	for i, name := range names {
		// The primary's history must describe its file (the replica got
		// a snapshot of the file; the history is what later catch-ups use).
		if got := requireReplicaFileMatchesPos(t, p, name); got.txid != sideFileCases[i].txid {
			t.Fatalf("primary %s: TXID %d (ltx files %v), want %d", name, got.txid, ltxFiles(t, p, name), sideFileCases[i].txid)
		}
		if got, want := contentDigest(t, rs[0].DBPath(name)), contentDigest(t, p.DBPath(name)); got != want {
			t.Fatalf("replica %s: digest %s, primary %s", name, got, want)
		}
		requireReplicaFileMatchesPos(t, rs[0], name)
	}
}

func TestSideFiles_CopiedJournalCanBeRemoved(t *testing.T) {
	RequireFUSE(t)
	p := StartNode(t, NodeOptions{})
	src := filepath.Join(t.TempDir(), "src.db")
	conn := openSourceConn(t, src, sideFileCases[0].params)
	openHotJournal(t, conn)
	mnt := p.DBPath("rm.db")
	copyFile(t, src+"-journal", mnt+"-journal")
	copyFile(t, src, mnt)
	requireListedSideFile(t, p.MountDir, "rm.db-journal", fileSize(t, src+"-journal"))
	if err := os.Remove(mnt + "-journal"); err != nil {
		t.Fatalf("rm rm.db-journal: %v", err)
	}
	if _, err := statTimeout(mnt+"-journal", 10*time.Second); !os.IsNotExist(err) {
		t.Fatalf("rm.db-journal after rm: stat error %v, want not-exist", err)
	}
	if listed(t, p.MountDir, "rm.db-journal") {
		t.Fatalf("rm.db-journal still listed after rm")
	}
}

// openSourceConn opens one connection to a database on a plain directory.
func openSourceConn(t *testing.T, path, params string) *sql.Conn {
	t.Helper()
	db := OpenDB(t, path, params)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatalf("connect %s: %v", path, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func connExec(t *testing.T, conn *sql.Conn, query string) {
	t.Helper()
	ctx, cancel := sqlCtx()
	defer cancel()
	if _, err := conn.ExecContext(ctx, query); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

// checkedDigest opens the database read-write first (so that SQLite rolls
// back a hot journal or recovers a WAL), then returns contentDigest.
func checkedDigest(t *testing.T, path string) string {
	t.Helper()
	if got := strings.TrimSpace(RunSQLite3(t, path, "PRAGMA integrity_check;\n")); got != "ok" {
		t.Fatalf("%s: integrity_check: %s", path, got)
	}
	return contentDigest(t, path)
}

// requireListedSideFile checks that name is listed in dir and stats with
// the given size.
func requireListedSideFile(t *testing.T, dir, name string, size int64) {
	t.Helper()
	if !listed(t, dir, name) {
		t.Fatalf("%s is not listed in the mount", name)
	}
	fi, err := statTimeout(filepath.Join(dir, name), 10*time.Second)
	if err != nil {
		t.Fatalf("stat %s: %v (listed but not reachable)", name, err)
	}
	if fi.Size() != size {
		t.Fatalf("%s: size %d, want %d", name, fi.Size(), size)
	}
}

func listed(t *testing.T, dir, name string) bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	return slices.ContainsFunc(ents, func(e os.DirEntry) bool { return e.Name() == name })
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Size()
}

// copyFile copies src to dst as cp does: create, write, close.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatalf("open %s: %v", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("create %s: %v", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
	if err := out.Close(); err != nil {
		t.Fatalf("close %s: %v", dst, err)
	}
}

// TestSideFiles_AdoptedHotJournalRolledBackAtRestart: a daemon restarted
// before any SQLite opened the copied-in database rolls the adopted journal
// back itself (recovery), and records that content, not the half-written
// copy, as the first transaction.
func TestSideFiles_AdoptedHotJournalRolledBackAtRestart(t *testing.T) {
	RequireFUSE(t)
	p := StartNode(t, NodeOptions{})
	src := filepath.Join(t.TempDir(), "src.db")
	conn := openSourceConn(t, src, sideFileCases[0].params)
	openHotJournal(t, conn)
	plain := filepath.Join(t.TempDir(), "plain.db")
	for _, dst := range []string{plain, p.DBPath("restart.db")} {
		copyFile(t, src+"-journal", dst+"-journal")
		copyFile(t, src, dst)
	}
	p.Restart(t)
	if got := readPos(t, p, "restart.db"); got.txid != 1 {
		t.Fatalf("after restart: TXID %d, want 1 (the rolled-back content)", got.txid)
	}
	requireReplicaFileMatchesPos(t, p, "restart.db")
	if got, want := checkedDigest(t, p.DBPath("restart.db")), checkedDigest(t, plain); got != want {
		t.Fatalf("after restart: digest %s, want %s (the plain directory's)", got, want)
	}
}
