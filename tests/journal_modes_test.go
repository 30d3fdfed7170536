package tests

import (
	"context"
	"database/sql"
	"fmt"
	"hash/crc64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// End-to-end tests of SPEC section 6 in every journal mode SQLite offers:
// each committed write transaction advances the TXID by exactly one, nothing
// else does, and the checksum in <db>-pos always equals a from-scratch
// checksum of the database file.

// journalMode is one way SQLite can journal its writes.
type journalMode struct {
	name string // subtest name
	dsn  string // go-sqlite3 DSN parameters that select it
	want string // what PRAGMA journal_mode must answer
	wal  bool
}

// journalModes lists the rollback modes (with synchronous=FULL, so every
// commit goes through its fsyncs) and WAL.
var journalModes = []journalMode{
	{"delete", "_journal_mode=DELETE&_sync=FULL", "delete", false},
	{"truncate", "_journal_mode=TRUNCATE&_sync=FULL", "truncate", false},
	{"persist", "_journal_mode=PERSIST&_sync=FULL", "persist", false},
	{"wal", "_journal_mode=WAL&_sync=NORMAL", "wal", true},
}

// sqlStep is one statement list run on a database, and the TXID advance it
// must cause: 1 for a committed write transaction, 0 for anything else.
type sqlStep struct {
	name  string
	sql   string
	delta int64
	check func(t *testing.T, db *sql.DB) // optional, run after the step
	// rows runs sql with Query and reads every row: a statement that returns
	// rows as it goes (PRAGMA incremental_vacuum) runs to completion only so.
	rows bool
}

// sqlCtx returns a context bounding one SQL call.
func sqlCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

// mustExec runs one or more ';'-separated statements and fails the test on error.
func mustExec(t testing.TB, db *sql.DB, query string, args ...any) {
	t.Helper()
	ctx, cancel := sqlCtx()
	defer cancel()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("exec %q: %v", query, err)
	}
}

// queryString returns the first column of the single row query returns, as text.
func queryString(t testing.TB, db *sql.DB, query string, args ...any) string {
	t.Helper()
	ctx, cancel := sqlCtx()
	defer cancel()
	var s sql.NullString
	if err := db.QueryRowContext(ctx, query, args...).Scan(&s); err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return s.String
}

// queryInt returns the single integer query returns.
func queryInt(t testing.TB, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	ctx, cancel := sqlCtx()
	defer cancel()
	var n int64
	if err := db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	return n
}

// requireIntegrity fails the test unless PRAGMA integrity_check says ok.
func requireIntegrity(t testing.TB, db *sql.DB) {
	t.Helper()
	if got := queryString(t, db, "PRAGMA integrity_check"); got != "ok" {
		t.Fatalf("PRAGMA integrity_check = %q, want ok", got)
	}
}

// openSingleConn opens path with one pooled connection, so per-connection
// pragmas stay in effect and "all connections closed" means db.Close.
func openSingleConn(t testing.TB, path, params string) *sql.DB {
	t.Helper()
	db := OpenDB(t, path, params)
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	return db
}

// closeDB closes db within a time limit.
func closeDB(t testing.TB, db *sql.DB) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- db.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("close database: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("close database: no answer within 10s")
	}
}

// dataFile is the path of one of database name's files in n's data directory
// (SPEC section 4): "database", "journal", "wal", "shm".
func dataFile(n *Node, name, kind string) string {
	return filepath.Join(n.DataDir, "dbs", name, kind)
}

// requirePosMatchesFile checks that the checksum <name>-pos claims equals a
// from-scratch checksum of <data.dir>/dbs/<name>/database. The caller must
// have closed every connection to the database. In WAL mode the WAL is first
// checkpointed (TRUNCATE) so the database file holds every transaction; the
// checkpoint must not change the TXID. It returns the position.
func requirePosMatchesFile(t testing.TB, n *Node, name string, wal bool) (uint64, uint64) {
	t.Helper()
	txid, sum := ReadPos(t, n, name)
	if wal {
		out := RunSQLite3(t, n.DBPath(name), "PRAGMA wal_checkpoint(TRUNCATE);\n")
		if !strings.HasPrefix(out, "0|") {
			t.Fatalf("PRAGMA wal_checkpoint(TRUNCATE) = %q, want busy=0", out)
		}
		var after uint64
		if after, sum = ReadPos(t, n, name); after != txid {
			t.Fatalf("a WAL checkpoint moved the TXID from %d to %d; a checkpoint is not a transaction", txid, after)
		}
		if fi, err := os.Stat(dataFile(n, name, "wal")); err == nil && fi.Size() != 0 {
			t.Fatalf("after a TRUNCATE checkpoint with no connection open, %s has %d bytes", dataFile(n, name, "wal"), fi.Size())
		}
	}
	if file := FileChecksum(t, dataFile(n, name, "database")); file != sum {
		t.Fatalf("%s-pos says TXID %d checksum %016x, but the database file's checksum is %016x",
			name, txid, sum, file)
	}
	return txid, sum
}

// runSteps runs each step on db and checks the TXID advance it causes. In a
// rollback mode the database file holds every committed transaction as soon
// as COMMIT returns, so its checksum is compared with -pos after each step.
func runSteps(t *testing.T, n *Node, name string, db *sql.DB, steps []sqlStep, rollbackMode bool) {
	t.Helper()
	for _, s := range steps {
		before, _ := ReadPos(t, n, name)
		if s.rows {
			drainQuery(t, db, s.sql)
		} else {
			mustExec(t, db, s.sql)
		}
		after, _ := ReadPos(t, n, name)
		if got := int64(after) - int64(before); got != s.delta {
			t.Errorf("step %q: TXID went from %d to %d (%+d), want %+d\nsql: %s",
				s.name, before, after, got, s.delta, s.sql)
		}
		if s.check != nil {
			s.check(t, db)
		}
		if rollbackMode {
			_, sum := ReadPos(t, n, name)
			if file := FileChecksum(t, dataFile(n, name, "database")); file != sum {
				t.Errorf("step %q: %s-pos says checksum %016x, the database file has %016x", s.name, name, sum, file)
			}
		}
	}
}

// drainQuery runs one statement and reads all the rows it returns.
func drainQuery(t testing.TB, db *sql.DB, query string) {
	t.Helper()
	forEachRow(t, db, query, func(*sql.Rows) {})
}

// forEachRow runs query and calls fn for each row, failing t on any error.
func forEachRow(t testing.TB, db *sql.DB, query string, fn func(*sql.Rows)) {
	t.Helper()
	ctx, cancel := sqlCtx()
	defer cancel()
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
	defer rows.Close()
	for rows.Next() {
		fn(rows)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query %q: %v", query, err)
	}
}

// wantInt returns a step check that query returns want.
func wantInt(query string, want int64) func(*testing.T, *sql.DB) {
	return func(t *testing.T, db *sql.DB) {
		t.Helper()
		if got := queryInt(t, db, query); got != want {
			t.Errorf("%s = %d, want %d", query, got, want)
		}
	}
}

// openModeDB opens database name on n in the given mode and checks that
// SQLite really uses that mode.
func openModeDB(t *testing.T, n *Node, name string, m journalMode) *sql.DB {
	t.Helper()
	db := openSingleConn(t, n.DBPath(name), m.dsn)
	if got := queryString(t, db, "PRAGMA journal_mode"); got != m.want {
		t.Fatalf("PRAGMA journal_mode = %q, want %q", got, m.want)
	}
	return db
}

// TestJournalModes_TXIDAdvancesOncePerCommit runs every kind of statement
// an application uses, in every journal mode, and checks the TXID advance
// of each, the data, integrity, and the final checksum against the file.
func TestJournalModes_TXIDAdvancesOncePerCommit(t *testing.T) {
	RequireFUSE(t)
	for _, m := range journalModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			n := StartNode(t, NodeOptions{})
			const name = "steps.db"
			db := openModeDB(t, n, name, m)
			steps := []sqlStep{
				{name: "create table", delta: 1,
					sql: "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"},
				{name: "insert 100 rows", delta: 1,
					sql:   "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 100) INSERT INTO t(id, v) SELECT i, 'row' || i FROM c",
					check: wantInt("SELECT count(*) FROM t", 100)},
				{name: "update", delta: 1,
					sql:   "UPDATE t SET v = 'updated' WHERE id % 2 = 0",
					check: wantInt("SELECT count(*) FROM t WHERE v = 'updated'", 50)},
				{name: "delete", delta: 1,
					sql:   "DELETE FROM t WHERE id > 90",
					check: wantInt("SELECT count(*) FROM t", 90)},
				{name: "read", delta: 0, sql: "SELECT count(*) FROM t"},
				{name: "empty BEGIN IMMEDIATE; COMMIT", delta: 0, sql: "BEGIN IMMEDIATE; COMMIT"},
				{name: "empty BEGIN EXCLUSIVE; COMMIT", delta: 0, sql: "BEGIN EXCLUSIVE; COMMIT"},
				{name: "write statement matching no row", delta: 0, sql: "UPDATE t SET v = 'x' WHERE id < 0"},
				{name: "rolled back transaction", delta: 0,
					sql:   "BEGIN; INSERT INTO t(id, v) VALUES (500, 'gone'); UPDATE t SET v = 'gone'; DELETE FROM t WHERE id < 10; ROLLBACK",
					check: wantInt("SELECT count(*) FROM t WHERE v = 'gone' OR id = 500", 0)},
				{name: "multi-statement transaction", delta: 1,
					sql:   "BEGIN; INSERT INTO t(id, v) VALUES (501, 'a'); UPDATE t SET v = 'b' WHERE id = 1; DELETE FROM t WHERE id = 2; COMMIT",
					check: wantInt("SELECT count(*) FROM t WHERE id = 501 OR (id = 1 AND v = 'b') OR id = 2", 2)},
				{name: "savepoints inside a transaction", delta: 1,
					sql: "BEGIN; INSERT INTO t(id, v) VALUES (1001, 'a'); " +
						"SAVEPOINT s1; INSERT INTO t(id, v) VALUES (1002, 'b'); ROLLBACK TO s1; RELEASE s1; " +
						"SAVEPOINT s2; INSERT INTO t(id, v) VALUES (1003, 'c'); RELEASE s2; " +
						"SAVEPOINT s3; UPDATE t SET v = 'changed' WHERE id = 1001; ROLLBACK TO s3; RELEASE s3; COMMIT",
					check: wantInt("SELECT count(*) FROM t WHERE (id = 1001 AND v = 'a') OR id = 1003 OR id = 1002", 2)},
				{name: "savepoint as the outermost transaction", delta: 1,
					sql: "SAVEPOINT outer1; INSERT INTO t(id, v) VALUES (1004, 'd'); " +
						"SAVEPOINT inner1; INSERT INTO t(id, v) VALUES (1005, 'e'); RELEASE inner1; RELEASE outer1",
					check: wantInt("SELECT count(*) FROM t WHERE id IN (1004, 1005)", 2)},
				{name: "savepoint then ROLLBACK", delta: 0,
					sql:   "SAVEPOINT s4; INSERT INTO t(id, v) VALUES (1006, 'f'); ROLLBACK",
					check: wantInt("SELECT count(*) FROM t WHERE id = 1006", 0)},
				{name: "VACUUM", delta: 1, sql: "VACUUM",
					check: wantInt("SELECT count(*) FROM t", 94)},
				{name: "create table for incremental vacuum", delta: 1,
					sql: "CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)"},
				{name: "auto_vacuum=incremental and VACUUM", delta: 1,
					sql:   "PRAGMA auto_vacuum = INCREMENTAL; VACUUM",
					check: wantInt("PRAGMA auto_vacuum", 2)},
				{name: "insert 200 blobs", delta: 1,
					sql: "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 200) INSERT INTO big(v) SELECT randomblob(3000) FROM c"},
				{name: "delete the blobs", delta: 1, sql: "DELETE FROM big",
					check: func(t *testing.T, db *sql.DB) {
						if got := queryInt(t, db, "PRAGMA freelist_count"); got < 150 {
							t.Errorf("PRAGMA freelist_count = %d after deleting 200 blobs, want >= 150", got)
						}
					}},
				{name: "incremental_vacuum (shrinks the file)", delta: 1, sql: "PRAGMA incremental_vacuum", rows: true,
					check: wantInt("PRAGMA freelist_count", 0)},
				{name: "insert 100 blobs", delta: 1,
					sql: "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 100) INSERT INTO big(v) SELECT randomblob(3000) FROM c"},
				{name: "delete them", delta: 1, sql: "DELETE FROM big"},
				{name: "VACUUM that shrinks the file", delta: 1, sql: "VACUUM",
					check: func(t *testing.T, db *sql.DB) {
						if got := queryInt(t, db, "PRAGMA page_count"); got > 20 {
							t.Errorf("PRAGMA page_count = %d after VACUUM of an almost empty database, want <= 20", got)
						}
					}},
				// Switching between incremental and full needs no VACUUM:
				// the pragma itself rewrites the header in a transaction.
				{name: "auto_vacuum=full", delta: 1, sql: "PRAGMA auto_vacuum = FULL",
					check: wantInt("PRAGMA auto_vacuum", 1)},
				{name: "insert 100 blobs with auto_vacuum=full", delta: 1,
					sql: "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 100) INSERT INTO big(v) SELECT randomblob(3000) FROM c"},
				{name: "delete with auto_vacuum=full (shrinks the file at commit)", delta: 1, sql: "DELETE FROM big WHERE id % 2 = 0",
					check: wantInt("PRAGMA freelist_count", 0)},
				{name: "read after vacuums", delta: 0, sql: "SELECT sum(length(v)) FROM t"},
			}
			runSteps(t, n, name, db, steps, !m.wal)
			requireIntegrity(t, db)
			pages := queryInt(t, db, "PRAGMA page_count")
			closeDB(t, db)
			requirePosMatchesFile(t, n, name, m.wal)
			if fi, err := os.Stat(dataFile(n, name, "database")); err != nil {
				t.Fatal(err)
			} else if fi.Size() != pages*4096 {
				t.Errorf("at the end the database file has %d bytes, want PRAGMA page_count (%d) pages of 4096 bytes", fi.Size(), pages)
			}
		})
	}
}

// fileDigest is a CRC64 of a whole file read through the mount, used to see
// whether SQLite wrote to it.
func fileDigest(t testing.TB, path string) uint64 {
	t.Helper()
	data, err := ReadFileTimeout(path, 10*time.Second)
	if os.IsNotExist(err) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return crc64.Checksum(data, crc64ISO)
}

// TestJournalModes_LargeTransactionSpillsCache commits, then rolls back, a
// transaction far larger than a 10-page cache, so SQLite writes pages to
// the database file (or WAL) before the transaction ends. The commit must
// count once, the rollback not at all, and the checksum must match the file
// after each.
func TestJournalModes_LargeTransactionSpillsCache(t *testing.T) {
	RequireFUSE(t)
	for _, m := range journalModes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			n := StartNode(t, NodeOptions{})
			const name = "large.db"
			db := openModeDB(t, n, name, m)
			mustExec(t, db, "CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB)")
			mustExec(t, db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 20) INSERT INTO big(v) SELECT randomblob(4000) FROM c")
			mustExec(t, db, "PRAGMA cache_size = 10")

			// spilled is the file a mid-transaction cache spill changes.
			spilled := n.DBPath(name)
			if m.wal {
				spilled += "-wal"
			}
			const insert2MB = "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 500) INSERT INTO big(v) SELECT randomblob(4000) FROM c"
			bigTx := func(t *testing.T, commit bool, stmts ...string) {
				t.Helper()
				before, _ := ReadPos(t, n, name)
				digest := fileDigest(t, spilled)
				mustExec(t, db, "BEGIN")
				for _, s := range stmts {
					mustExec(t, db, s)
				}
				if fileDigest(t, spilled) == digest {
					t.Fatalf("%s did not change during a 2 MB transaction with cache_size=10: no cache spill, the test proves nothing", spilled)
				}
				mid, _ := ReadPos(t, n, name)
				end, want := "ROLLBACK", before
				if commit {
					end, want = "COMMIT", before+1
				}
				mustExec(t, db, end)
				after, _ := ReadPos(t, n, name)
				if mid != before || after != want {
					t.Fatalf("%s of a spilled transaction: TXID %d before, %d mid-transaction, %d after; want %d, %d, %d",
						end, before, mid, after, before, before, want)
				}
			}

			// A committed 2 MB transaction.
			bigTx(t, true, insert2MB)
			if got := queryInt(t, db, "SELECT count(*) FROM big"); got != 520 {
				t.Fatalf("count after the large commit = %d, want 520", got)
			}
			const contentQuery = "SELECT count(*) || ':' || group_concat(hex(substr(v, 1, 16)), ',') FROM big"
			content := queryString(t, db, contentQuery)

			// A 4 MB transaction that rewrites every page and grows the file, rolled back.
			bigTx(t, false, "UPDATE big SET v = randomblob(4000)", insert2MB)
			if got := queryString(t, db, contentQuery); got != content {
				t.Fatal("the rolled-back transaction changed the table")
			}
			requireIntegrity(t, db)
			if m.wal {
				// The WAL now ends with the rolled-back transaction's frames
				// after the last commit. Checkpointing ~530 pages takes well
				// under a second on a local disk.
				start := time.Now()
				drainQuery(t, db, "PRAGMA wal_checkpoint(PASSIVE)")
				if d := time.Since(start); d > 5*time.Second {
					t.Errorf("PRAGMA wal_checkpoint(PASSIVE) after a rolled-back spilled transaction took %s", d.Round(time.Millisecond))
				}
			}
			closeDB(t, db)
			txid, _ := requirePosMatchesFile(t, n, name, m.wal)

			// The database goes on normally after the rollback.
			db = openModeDB(t, n, name, m)
			mustExec(t, db, "DELETE FROM big WHERE id % 3 = 0")
			requireIntegrity(t, db)
			closeDB(t, db)
			if after, _ := requirePosMatchesFile(t, n, name, m.wal); after != txid+1 {
				t.Fatalf("TXID after one more commit = %d, want %d", after, txid+1)
			}
		})
	}
}

// TestJournalModes_WALCheckpointModes runs every checkpoint mode between
// writes: a checkpoint never counts as a transaction, writes after it do,
// nothing is lost, and the checksum matches the file at the end.
func TestJournalModes_WALCheckpointModes(t *testing.T) {
	RequireFUSE(t)
	n := StartNode(t, NodeOptions{})
	const name = "ckpt.db"
	m := journalModes[len(journalModes)-1]
	db := openModeDB(t, n, name, m)
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
	mustExec(t, db, "PRAGMA wal_autocheckpoint = 0") // only the explicit checkpoints below
	rows := int64(0)
	write := func(label string) {
		t.Helper()
		before, _ := ReadPos(t, n, name)
		mustExec(t, db, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 10) INSERT INTO t(v) SELECT randomblob(2000) FROM c")
		rows += 10
		if after, _ := ReadPos(t, n, name); after != before+1 {
			t.Errorf("%s: TXID %d -> %d, want +1", label, before, after)
		}
	}
	for _, mode := range []string{"PASSIVE", "FULL", "RESTART", "TRUNCATE"} {
		write("write before " + mode)
		write("second write before " + mode)
		before, _ := ReadPos(t, n, name)
		ctx, cancel := sqlCtx()
		var busy, logFrames, ckpt int64
		err := db.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &logFrames, &ckpt)
		cancel()
		if err != nil {
			t.Fatalf("PRAGMA wal_checkpoint(%s): %v", mode, err)
		}
		if busy != 0 || logFrames != ckpt {
			t.Errorf("PRAGMA wal_checkpoint(%s) = %d|%d|%d, want busy 0 and every frame checkpointed", mode, busy, logFrames, ckpt)
		}
		if mode != "TRUNCATE" && logFrames == 0 {
			t.Errorf("PRAGMA wal_checkpoint(%s) saw an empty WAL after two writes", mode)
		}
		if after, _ := ReadPos(t, n, name); after != before {
			t.Errorf("PRAGMA wal_checkpoint(%s) moved the TXID from %d to %d", mode, before, after)
		}
		if mode == "TRUNCATE" {
			if fi, err := os.Stat(n.DBPath(name) + "-wal"); err != nil || fi.Size() != 0 {
				t.Errorf("after wal_checkpoint(TRUNCATE) the WAL is %v (err %v), want 0 bytes", fi, err)
			}
		}
		write("write after " + mode)
		if got := queryInt(t, db, "SELECT count(*) FROM t"); got != rows {
			t.Fatalf("after wal_checkpoint(%s): %d rows, want %d", mode, got, rows)
		}
	}

	// Automatic checkpoints (PASSIVE, run by the committing connection).
	mustExec(t, db, "PRAGMA wal_autocheckpoint = 5")
	for i := 0; i < 10; i++ {
		write(fmt.Sprintf("write %d with wal_autocheckpoint=5", i))
	}
	if got := queryInt(t, db, "SELECT count(*) FROM t"); got != rows {
		t.Fatalf("after automatic checkpoints: %d rows, want %d", got, rows)
	}
	requireIntegrity(t, db)
	closeDB(t, db)
	requirePosMatchesFile(t, n, name, true)
}
