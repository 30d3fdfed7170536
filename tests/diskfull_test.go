package tests

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/superfly/ltx"
)

// Issue 14, item 4: with the data directory full, whatever SQLite reports
// as failed must leave nothing behind: no row, no LTX file, the position
// unchanged, nothing on a replica. Once space is freed writes work again,
// and a restart recovers exactly the acknowledged rows.

// diskFullMode is one journal mode the full-disk test runs in.
type diskFullMode struct {
	name   string
	params string // DSN parameters of OpenDB
	wal    bool
	// wantFull: every failure must be SQLITE_FULL. In WAL mode with
	// synchronous=FULL the commit can fail at the WAL's fsync, which
	// SQLite reports as SQLITE_IOERR_FSYNC whatever the cause.
	wantFull bool
}

var diskFullModes = []diskFullMode{
	{"WAL_FULL", "_journal_mode=WAL&_sync=FULL", true, false},
	{"WAL_NORMAL", "_journal_mode=WAL&_sync=NORMAL", true, true},
	{"DELETE", "_journal_mode=DELETE&_sync=FULL", false, true},
	{"TRUNCATE", "_journal_mode=TRUNCATE&_sync=FULL", false, true},
	{"PERSIST", "_journal_mode=PERSIST&_sync=FULL", false, true},
}

// bigBlob is the size of the row that makes the WAL (or PERSIST journal)
// large before the disk is filled, so later commits write into space the
// file already has and only litefs's own LTX file needs new space.
const bigBlob = 2 << 20

func TestDiskFull_FailedCommitLeavesNothing(t *testing.T) {
	for _, m := range diskFullModes {
		t.Run(m.name, func(t *testing.T) { runDiskFull(t, m) })
	}
}

// diskFullModel is what the test knows the table must hold: the tag of
// every acknowledged row, by id.
type diskFullModel map[int]string

func runDiskFull(t *testing.T, m diskFullMode) {
	p := startNodeOnTmpfs(t, "20m", NodeOptions{})
	r := StartNode(t, NodeOptions{Primary: p})
	db := OpenDB(t, p.DBPath("db"), m.params)
	db.SetMaxOpenConns(1)
	model := diskFullModel{}
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, v BLOB)")
	mustExec(t, db, fmt.Sprintf("INSERT INTO t VALUES (1, 'big', randomblob(%d))", bigBlob))
	model[1] = "big"
	// The same-size UPDATE rewrites the blob's pages in place: it grows a
	// PERSIST journal to hold them, and the WAL to the blob's size.
	mustExec(t, db, fmt.Sprintf("UPDATE t SET tag = 'big0', v = randomblob(%d) WHERE id = 1", bigBlob))
	model[1] = "big0"
	if m.wal {
		mustExec(t, db, "PRAGMA wal_checkpoint(PASSIVE)")
	}
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "db")

	filler := fillDisk(t, p.DataDir)
	t.Logf("disk filled, %d bytes free", freeBytes(t, p.DataDir))
	failures := 0
	for i := 0; i < 6; i++ {
		stmt := fmt.Sprintf("INSERT INTO t VALUES (%d, 'ins%d', randomblob(3000))", 100+i, i)
		id, tag := 100+i, fmt.Sprintf("ins%d", i)
		if i%2 == 1 {
			stmt = fmt.Sprintf("UPDATE t SET tag = 'upd%d', v = randomblob(%d) WHERE id = 1", i, bigBlob)
			id, tag = 1, fmt.Sprintf("upd%d", i)
		}
		if diskFullAttempt(t, p, r, db, m, stmt) {
			model[id] = tag
		} else {
			failures++
		}
		requireTagRowsWhileFull(t, db, model, m.wal)
	}
	if failures == 0 {
		t.Fatalf("no statement failed on a full disk")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, "INSERT INTO t VALUES (200, 'after', randomblob(3000))")
	model[200] = "after"
	requireTagRows(t, db, model)
	// Before any restart: the acknowledged commits' LTX files are whole
	// and the replica has all of them.
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "db")
	requireLTXHistoryWhole(t, p, "db")
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	p.Restart(t)
	db = OpenDB(t, p.DBPath("db"), m.params)
	requireTagRows(t, db, model)
	mustExec(t, db, "INSERT INTO t VALUES (201, 'restarted', randomblob(3000))")
	model[201] = "restarted"
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "db")
	requireTagRows(t, OpenDB(t, r.DBPath("db"), ""), model)
	if err := db.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	requirePosMatchesFile(t, p, "db", m.wal)
}

// diskFullAttempt runs stmt on a full disk. A statement SQLite reports as
// done must have moved the position; a failed one must have the error the
// mode allows and must leave the position, the LTX files and the replica as
// they were. It reports whether the statement succeeded.
func diskFullAttempt(t *testing.T, p, r *Node, db *sql.DB, m diskFullMode, stmt string) bool {
	t.Helper()
	before := readPos(t, p, "db")
	ltxBefore := ltxFiles(t, p, "db")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := db.ExecContext(ctx, stmt)
	after := readPos(t, p, "db")
	if err == nil {
		t.Logf("%s: succeeded, position %s -> %s", stmt[:20], before, after)
		if after.txid != before.txid+1 {
			t.Fatalf("%s succeeded but the TXID went %d -> %d", stmt, before.txid, after.txid)
		}
		return true
	}
	var se sqlite3.Error
	if !errors.As(err, &se) {
		t.Fatalf("%s: %v, want a SQLite error", stmt, err)
	}
	t.Logf("%s: failed: %v (extended code %d)", stmt[:20], err, se.ExtendedCode)
	if m.wantFull && se.Code != sqlite3.ErrFull {
		t.Errorf("%s: %v, want SQLITE_FULL (database or disk is full)", stmt, err)
	} else if se.Code != sqlite3.ErrFull && se.Code != sqlite3.ErrIoErr {
		t.Errorf("%s: %v, want SQLITE_FULL or SQLITE_IOERR", stmt, err)
	}
	if after != before {
		t.Errorf("%s failed (%v), yet the position moved %s -> %s", stmt, err, before, after)
	}
	// An acknowledged commit's file may still be landing; a failed one's
	// TXID is above the position.
	if got := ltxFiles(t, p, "db"); maxLTXTXID(got) > before.txid {
		t.Errorf("%s failed, yet an LTX file beyond TXID %d exists:\nbefore %v\nafter  %v", stmt, before.txid, ltxBefore, got)
	}
	time.Sleep(200 * time.Millisecond) // time for a stray transaction to travel
	if rp := readPos(t, r, "db"); rp.txid > before.txid {
		t.Errorf("%s failed, yet the replica reached %s (primary before: %s)", stmt, rp, before)
	}
	return false
}

// requireTagRowsWhileFull checks the rows while the disk is full. In a
// rollback mode a failed commit may have reused free pages that SQLite does
// not journal: rolling it back leaves them changed, which needs an LTX file
// too, so until space is freed the hot journal stays and reads report
// SQLITE_FULL (see docs/ARCHITECTURE.md, Durability).
func requireTagRowsWhileFull(t testing.TB, db *sql.DB, model diskFullModel, wal bool) {
	t.Helper()
	if !wal {
		var se sqlite3.Error
		if _, err := readRows(db); errors.As(err, &se) && se.Code == sqlite3.ErrFull {
			t.Logf("read while the disk is full: %v", err)
			return
		}
	}
	requireTagRows(t, db, model)
}

// requireTagRows checks that table t holds exactly the rows of model.
func requireTagRows(t testing.TB, db *sql.DB, model diskFullModel) {
	t.Helper()
	got, err := readRows(db)
	if err != nil {
		t.Fatalf("read rows: %v", err)
	}
	if fmt.Sprint(got) != fmt.Sprint(map[int]string(model)) {
		t.Fatalf("rows %v, want exactly the acknowledged %v", got, map[int]string(model))
	}
}

// readRows returns id -> tag of every row of t.
func readRows(db *sql.DB) (map[int]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT id, tag FROM t")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]string{}
	for rows.Next() {
		var id int
		var tag string
		if err := rows.Scan(&id, &tag); err != nil {
			return nil, err
		}
		out[id] = tag
	}
	return out, rows.Err()
}

// maxLTXTXID returns the highest maximum TXID among LTX file names.
func maxLTXTXID(names []string) uint64 {
	var max uint64
	for _, n := range names {
		hex := strings.TrimSuffix(n, ".ltx")
		if i := strings.IndexByte(hex, '-'); i > 0 {
			if v, err := strconv.ParseUint(hex[i+1:], 16, 64); err == nil && v > max {
				max = v
			}
		}
	}
	return max
}

// requireLTXHistoryWhole checks that the LTX files of name on n are TXIDs
// 1..position, one each, and that every one decodes and verifies: an
// acknowledged commit has a whole file, a failed one none.
func requireLTXHistoryWhole(t testing.TB, n *Node, name string) {
	t.Helper()
	want := readPos(t, n, name).txid
	names := ltxFiles(t, n, name)
	// A WAL commit's file is written in the background within milliseconds.
	for deadline := time.Now().Add(5 * time.Second); uint64(len(names)) != want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		names = ltxFiles(t, n, name)
	}
	if uint64(len(names)) != want || maxLTXTXID(names) != want {
		t.Fatalf("position TXID %d, LTX files %v", want, names)
	}
	for _, file := range names {
		if err := verifyLTXFile(filepath.Join(n.DataDir, "dbs", name, "ltx", file)); err != nil {
			t.Fatalf("LTX file %s: %v", file, err)
		}
	}
}

// verifyLTXFile decodes a whole LTX file and verifies its checksums.
func verifyLTXFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return ltx.NewDecoder(f).Verify()
}
