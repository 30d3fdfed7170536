package http

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/litefs/litefs"
	_ "github.com/mattn/go-sqlite3"
)

// quietLogger drops log lines so test output shows failures only.
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// openStore opens a store on a fresh temporary data directory.
func openStore(t testing.TB) *litefs.Store {
	t.Helper()
	s, err := litefs.OpenStore(context.Background(), litefs.StoreOptions{
		Dir: t.TempDir(), StrictVerify: true, SkipSync: true, Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// makeSQLiteFile creates a real SQLite database file with n rows of ~200
// bytes (rollback journal mode) and returns its bytes.
func makeSQLiteFile(t testing.TB, n int) []byte {
	t.Helper()
	return makeDBFile(t, n, "DELETE")
}

// makeWALFile creates a real SQLite database in WAL mode (checkpointed, so
// the database file is complete) with n rows and returns its bytes.
func makeWALFile(t testing.TB, n int) []byte {
	t.Helper()
	b := makeDBFile(t, n, "WAL")
	if b[18] != 2 || b[19] != 2 {
		t.Fatal("setup: the database is not in WAL mode")
	}
	return b
}

// makeDBFile creates a database in the given journal mode with n rows of
// ~200 bytes, checkpoints it (a no-op outside WAL mode) and returns its bytes.
func makeDBFile(t testing.TB, n int, journal string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "src.db")
	sdb, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode="+journal)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	qs := []string{`CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)`}
	for i := 0; i < n; i++ {
		qs = append(qs, `INSERT INTO t(v) VALUES(randomblob(200))`)
	}
	for _, q := range append(qs, `PRAGMA wal_checkpoint(TRUNCATE)`) {
		if _, err := sdb.Exec(q); err != nil {
			t.Fatal(err)
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

// writeTx plays one rollback-journal transaction through the DB API that
// leaves the database file equal to content, the way SQLite does: hot
// journal, page writes, truncate, journal deletion (the commit point).
func writeTx(t testing.TB, db *litefs.DB, content []byte) {
	t.Helper()
	if err := db.Create(litefs.FileJournal); err != nil {
		t.Fatal(err)
	}
	hdr := append(append([]byte{}, litefs.JournalMagic...), make([]byte, 20)...)
	if _, err := db.WriteAt(litefs.FileJournal, hdr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := db.WriteAt(litefs.FileDatabase, content, 0); err != nil {
		t.Fatal(err)
	}
	if err := db.Truncate(litefs.FileDatabase, int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if err := db.Remove(litefs.FileJournal); err != nil {
		t.Fatal(err)
	}
}

// createDBWithTxs creates database name in s and commits one transaction
// per content, returning the database.
func createDBWithTxs(t testing.TB, s *litefs.Store, name string, contents ...[]byte) *litefs.DB {
	t.Helper()
	db, err := s.CreateDB(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range contents {
		writeTx(t, db, c)
	}
	return db
}

// readDBFile returns the database file of db as stored on disk.
func readDBFile(t *testing.T, db *litefs.DB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(db.Dir(), litefs.DatabaseFileName))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startServer serves s's HTTP API on an httptest server (127.0.0.1).
func startServer(t testing.TB, store *litefs.Store, opts ServerOptions) (*Server, *httptest.Server) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	if opts.TempDir == "" {
		opts.TempDir = t.TempDir()
	}
	srv := NewServer(store, opts)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return srv, ts
}

// do sends a request and returns the status and the body.
func do(t *testing.T, method, url string, body io.Reader, header map[string]string) (int, string) {
	t.Helper()
	req, err := nethttp.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// dbNames returns the names of the store's databases and the entries of
// its dbs directory, to check that nothing was created.
func dbNames(t *testing.T, s *litefs.Store) []string {
	t.Helper()
	var names []string
	for _, db := range s.DBs() {
		names = append(names, db.Name())
	}
	return names
}

// contains reports whether s contains every one of subs.
func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
