package tests

import (
	"bytes"
	"database/sql"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Import and export (SPEC section 2) and the database name rules of the
// HTTP API (SPEC sections 4 and 7).

// makeSQLiteFile creates a rollback-journal SQLite file at path holding
// table t(id, v) with rows rows of 300-byte values starting with tag.
func makeSQLiteFile(t *testing.T, path, tag string, rows int) {
	t.Helper()
	db := openSingleConn(t, path, "_journal_mode=DELETE")
	mustExec(t, db, "PRAGMA page_size = 4096")
	mustExec(t, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
	for i := 0; i < rows; i++ {
		mustExec(t, db, "INSERT INTO t(v) VALUES (? || randomblob(290))", tag)
	}
	closeDB(t, db)
}

// dumpRows returns every row of table t of the database at path, in order.
func dumpRows(t *testing.T, path string) string {
	t.Helper()
	db := OpenDB(t, path, "mode=ro")
	defer closeDB(t, db)
	return queryString(t, db, dumpQuery)
}

// rowKinds summarises table t for messages: how many rows of each origin.
const rowKinds = "SELECT count(*) || ' rows: ' || total(v LIKE 'original%') || ' original, ' || total(v LIKE 'imported%') || ' imported' FROM t"

// dumpQuery returns every row of table t as one string.
const dumpQuery = "SELECT count(*) || '=' || coalesce(group_concat(id || ':' || hex(v), ','), '') FROM (SELECT * FROM t ORDER BY id)"

// TestImport_RefusesCorruptAndNonSQLiteFiles imports a file that is not a
// SQLite database and a SQLite file with a damaged b-tree page: both are
// refused with a clear message and change nothing on the primary or the
// replica. A valid import then replaces the content, the replica follows,
// and `litefs export` on the replica gives a file with the same rows.
func TestImport_RefusesCorruptAndNonSQLiteFiles(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	const name = "imported.db"
	writeRows(t, p.DBPath(name), "_journal_mode=DELETE", "original", 20)
	before := waitConverged(t, ConvergeTimeout, p, rs, name)[name]
	rowsBefore := dumpRows(t, p.DBPath(name))

	dir := t.TempDir()
	notSQLite := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notSQLite, bytes.Repeat([]byte("this is not a database\n"), 400), 0o644); err != nil {
		t.Fatal(err)
	}
	corrupt := filepath.Join(dir, "corrupt.db")
	makeSQLiteFile(t, corrupt, "corrupt", 200)
	damagePage(t, corrupt, 5, 4096)
	// An index that does not match its table: the integrity check answers
	// with rows describing the damage rather than an error.
	badIndex := filepath.Join(dir, "bad-index.db")
	makeSQLiteFile(t, badIndex, "bad-index", 50)
	RunSQLite3(t, badIndex, "CREATE INDEX tv ON t(v);\nPRAGMA writable_schema = ON;\n"+
		"UPDATE sqlite_schema SET sql = 'CREATE INDEX tv ON t(id)' WHERE name = 'tv';\n")
	requireIntegrityFails(t, badIndex)
	good := filepath.Join(dir, "good.db")
	makeSQLiteFile(t, good, "imported", 50)
	rowsGood := dumpRows(t, good)
	// The valid file with its last page cut off: its header's page count
	// no longer matches.
	truncated := filepath.Join(dir, "truncated.db")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, data[:len(data)-4096], 0o644); err != nil {
		t.Fatal(err)
	}

	unchanged := func(what string) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // a change would have reached the replica by now
		for _, n := range []*Node{p, r} {
			if got := readPos(t, n, name); got != before {
				t.Errorf("after %s: %s moved %s from %s to %s", what, n.Name, name, before, got)
			}
			if got := dumpRows(t, n.DBPath(name)); got != rowsBefore {
				t.Errorf("after %s: the content of %s on %s changed", what, name, n.Name)
			}
		}
		for _, n := range []*Node{p, r} {
			if _, err := os.Stat(dataFile(n, "never.db", "database")); err == nil {
				t.Errorf("after %s: a refused import created never.db on %s", what, n.Name)
			}
		}
	}

	refusals := []struct {
		what, path string
		want       []string // the message must mention each
	}{
		{"a text file", notSQLite, []string{"not a SQLite database"}},
		{"a SQLite file with a damaged b-tree page", corrupt, []string{"integrity", "refused"}},
		{"a SQLite file whose index does not match its table", badIndex, []string{"integrity", "refused"}},
		{"a SQLite file missing its last page", truncated, []string{"refused"}},
	}
	for _, c := range refusals {
		for _, target := range []string{name, "never.db"} {
			code, out := runLitefsBounded(t, time.Minute, dir, "import", "-name", target, "-url", p.URL(), c.path)
			if code == 0 {
				t.Errorf("litefs import of %s as %s succeeded:\n%s", c.what, target, out)
			}
			t.Logf("litefs import of %s as %s: exit %d: %s", c.what, target, code, strings.TrimSpace(out))
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("litefs import of %s: the message does not mention %q:\n%s", c.what, w, out)
				}
			}
			unchanged("litefs import of " + c.what)

			body, err := os.ReadFile(c.path)
			if err != nil {
				t.Fatal(err)
			}
			status, msg := apiRequest(t, p, http.MethodPost, "/import", url.Values{"name": {target}}, bytes.NewReader(body))
			if status != http.StatusBadRequest || !strings.Contains(msg, c.want[0]) {
				t.Errorf("POST /import of %s as %s: %d %q, want 400 mentioning %q", c.what, target, status, msg, c.want[0])
			}
			unchanged("POST /import of " + c.what)
		}
	}

	code, out := runLitefsBounded(t, time.Minute, dir, "import", "-name", name, "-url", p.URL(), good)
	if code != 0 {
		t.Fatalf("litefs import of a valid file: exit %d:\n%s", code, out)
	}
	after := waitConverged(t, ConvergeTimeout, p, rs, name)[name]
	if after.txid != before.txid+1 {
		t.Errorf("the import moved %s from TXID %d to %d; want one transaction", name, before.txid, after.txid)
	}
	if file := FileChecksum(t, good); after.sum != file {
		t.Errorf("after the import %s is at %s; the imported file's checksum is %016x", name, after, file)
	}
	for _, n := range []*Node{p, r} {
		if got := dumpRows(t, n.DBPath(name)); got != rowsGood {
			t.Errorf("after the import, %s on %s does not hold the imported rows", name, n.Name)
		}
	}
	requireReplicaFileMatchesPos(t, r, name)

	exported := filepath.Join(dir, "exported.db")
	code, out = runLitefsBounded(t, time.Minute, dir, "export", "-name", name, "-url", r.URL(), exported)
	if code != 0 {
		t.Fatalf("litefs export on the replica: exit %d:\n%s", code, out)
	}
	if got := dumpRows(t, exported); got != rowsGood {
		t.Errorf("the file exported from the replica does not hold the imported rows")
	}
	if got, want := contentDigest(t, exported), contentDigest(t, p.DBPath(name)); got != want {
		t.Errorf("exported file %s, primary %s", got, want)
	}
	if file := FileChecksum(t, exported); file != after.sum {
		t.Errorf("the exported file's checksum is %016x, the replica's position %s", file, after)
	}
}

// damagePage overwrites page pgno of the SQLite file at path with garbage,
// and checks that SQLite's integrity check now fails on it.
func damagePage(t *testing.T, path string, pgno int64, pageSize int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	garbage := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x17}, int(pageSize)/5+1)[:pageSize]
	if _, err := f.WriteAt(garbage, (pgno-1)*pageSize); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	requireIntegrityFails(t, path)
}

// requireIntegrityFails checks that SQLite's own integrity check rejects
// the file at path (by an error or by describing the damage).
func requireIntegrityFails(t *testing.T, path string) {
	t.Helper()
	out, _ := runBounded(time.Minute, "sqlite3", path, "PRAGMA integrity_check;")
	if strings.TrimSpace(out) == "ok" {
		t.Fatalf("%s still passes PRAGMA integrity_check: the test cannot prove a refusal with it", path)
	}
	t.Logf("PRAGMA integrity_check on %s: %.200s", filepath.Base(path), strings.ReplaceAll(strings.TrimSpace(out), "\n", "; "))
}

// TestAPI_BadDatabaseNamesAreRefused sends names that are not plain file
// names to POST /import and GET /export on the primary and the replica: each
// gets 400, and nothing appears in either node's directory.
func TestAPI_BadDatabaseNamesAreRefused(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	writeRows(t, p.DBPath("x"), "_journal_mode=DELETE", "x", 3)
	waitConverged(t, ConvergeTimeout, p, rs, "x")
	good := filepath.Join(t.TempDir(), "good.db")
	makeSQLiteFile(t, good, "good", 5)
	body, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	trees := map[*Node][]string{p: nodeTree(t, p), r: nodeTree(t, r)}

	names := []string{"../x", "a/b", "", "..", ".", "/x", "dbs/../../x", "x\x00y", strings.Repeat("n", 256)}
	for _, name := range names {
		q := url.Values{"name": {name}}
		status, msg := apiRequest(t, p, http.MethodPost, "/import", q, bytes.NewReader(body))
		if status != http.StatusBadRequest {
			t.Errorf("POST /import?name=%q on the primary: %d %q, want 400", name, status, msg)
		}
		for _, n := range []*Node{p, r} {
			status, msg := apiRequest(t, n, http.MethodGet, "/export", q, nil)
			if status != http.StatusBadRequest {
				t.Errorf("GET /export?name=%q on %s: %d %.200q, want 400", name, n.Name, status, msg)
			}
		}
	}
	if status, msg := apiRequest(t, p, http.MethodPost, "/import", nil, bytes.NewReader(body)); status != http.StatusBadRequest {
		t.Errorf("POST /import without a name: %d %q, want 400", status, msg)
	}
	for n, before := range trees {
		if after := nodeTree(t, n); !slices.Equal(before, after) {
			t.Errorf("%s's directory changed:\nbefore %v\nafter  %v", n.Name, before, after)
		}
	}
	if got := readPos(t, p, "x"); got != readPos(t, r, "x") {
		t.Errorf("database x moved on one node only")
	}
}

// nodeTree lists every path under n's directory except the mount and the
// daemon's log, for before/after comparisons.
func nodeTree(t *testing.T, n *Node) []string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(n.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == n.MountDir {
			return filepath.SkipDir
		}
		if path != n.LogPath {
			paths = append(paths, strings.TrimPrefix(path, n.Dir))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths
}

// TestReplication_ImportReplacesContentUnderOpenConnections imports over a database
// that connections on the primary and on the replica keep open with warm
// caches: afterwards every connection, old or new, on either node, reads the
// imported rows and an intact database.
func TestReplication_ImportReplacesContentUnderOpenConnections(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	dir := t.TempDir()
	cases := []struct {
		name, dsn string
		wal       bool
		rows      int
		// importFile builds the file to import; cur is an export of the
		// database as it is now.
		importFile func(t *testing.T, cur, out string)
	}{
		{"wal-frames.db", "_journal_mode=WAL&_sync=NORMAL", true, 20, func(t *testing.T, cur, out string) {
			makeSQLiteFile(t, out, "imported", 30)
		}},
		{"same-counter.db", "_journal_mode=DELETE", false, 20, func(t *testing.T, cur, out string) {
			// Same pages, same size, same change counter as now: only the
			// row values differ.
			data, err := os.ReadFile(cur)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(out, data, 0o644); err != nil {
				t.Fatal(err)
			}
			RunSQLite3(t, out, "UPDATE t SET v = 'imported' || substr(v, 9);\n")
			patched, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			copy(patched[24:40], data[24:40])
			copy(patched[92:100], data[92:100])
			if err := os.WriteFile(out, patched, 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"shrink.db", "_journal_mode=DELETE", false, 400, func(t *testing.T, cur, out string) {
			makeSQLiteFile(t, out, "imported", 3)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := openSingleConn(t, p.DBPath(c.name), c.dsn)
			mustExec(t, w, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
			for i := 0; i < c.rows; i++ {
				mustExec(t, w, "INSERT INTO t(v) VALUES ('original' || randomblob(200))")
			}
			waitConverged(t, ConvergeTimeout, p, rs, c.name)
			cur := filepath.Join(dir, "cur-"+c.name)
			if code, out := runLitefsBounded(t, time.Minute, dir, "export", "-name", c.name, "-url", p.URL(), cur); code != 0 {
				t.Fatalf("export: exit %d:\n%s", code, out)
			}
			in := filepath.Join(dir, "in-"+c.name)
			c.importFile(t, cur, in)
			want := dumpRows(t, in)
			inDB := OpenDB(t, in, "mode=ro")
			wantKinds := queryString(t, inDB, rowKinds)
			closeDB(t, inDB)

			// Warm connections: the writer (its WAL still holds the
			// transactions in WAL mode), a reader on each node.
			old := map[string]*sql.DB{"primary writer": w,
				"primary reader": openSingleConn(t, p.DBPath(c.name), ""),
				"replica reader": openSingleConn(t, r.DBPath(c.name), "")}
			for who, db := range old {
				if n := queryInt(t, db, "SELECT count(*) FROM t WHERE v LIKE 'original%'"); n != int64(c.rows) {
					t.Fatalf("%s: %d original rows before the import, want %d", who, n, c.rows)
				}
			}
			if code, out := runLitefsBounded(t, time.Minute, dir, "import", "-name", c.name, "-url", p.URL(), in); code != 0 {
				t.Fatalf("import: exit %d:\n%s", code, out)
			}
			after := waitConverged(t, ConvergeTimeout, p, rs, c.name)[c.name]
			for who, db := range old {
				if got := queryString(t, db, "PRAGMA integrity_check"); got != "ok" {
					t.Errorf("%s, open across the import: PRAGMA integrity_check = %q", who, got)
				}
				if got := queryString(t, db, dumpQuery); got != want {
					t.Errorf("%s, open across the import, reads %s; want the %s", who, queryString(t, db, rowKinds), wantKinds)
				}
			}
			for _, n := range []*Node{p, r} {
				if got := dumpRows(t, n.DBPath(c.name)); got != want {
					db := OpenDB(t, n.DBPath(c.name), "mode=ro")
					t.Errorf("a new connection on %s reads %s; want the %s", n.Name, queryString(t, db, rowKinds), wantKinds)
					closeDB(t, db)
				}
			}
			for _, db := range old {
				closeDB(t, db)
			}
			if txid, _ := requirePosMatchesFile(t, p, c.name, c.wal); txid != after.txid {
				t.Errorf("primary moved from TXID %d to %d with no write", after.txid, txid)
			}
			requireReplicaFileMatchesPos(t, r, c.name)
		})
	}
}
