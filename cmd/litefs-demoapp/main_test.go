package main

import (
	"database/sql"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

// TestApp_StoresAndListsMessages: POST stores the body and names the
// node; GET lists every row, then the node; bad input is refused and
// stores nothing.
func TestApp_StoresAndListsMessages(t *testing.T) {
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(t.TempDir(), "demo.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(`CREATE TABLE t(id INTEGER PRIMARY KEY, msg TEXT)`); err != nil {
		t.Fatal(err)
	}
	h := newApp(db, "primary")
	steps := []struct {
		method, body string
		wantCode     int
		wantBody     string
	}{
		{"POST", "hello", http.StatusCreated, "stored message 1 on the primary\n"},
		{"POST", "  ", http.StatusBadRequest, "empty message"},
		{"POST", strings.Repeat("x", 5000), http.StatusBadRequest, "read message"},
		{"POST", "world", http.StatusCreated, "stored message 2 on the primary\n"},
		{"GET", "", http.StatusOK, "1|hello\n2|world\n(served by the primary)\n"},
		{"DELETE", "", http.StatusMethodNotAllowed, ""},
	}
	for _, s := range steps {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(s.method, "/messages", strings.NewReader(s.body)))
		if rec.Code != s.wantCode || !strings.Contains(rec.Body.String(), s.wantBody) {
			t.Fatalf("%s %.20q: %d %q, want %d containing %q", s.method, s.body, rec.Code, rec.Body.String(), s.wantCode, s.wantBody)
		}
	}
}

// TestRun_RequiresDB: without -db the app refuses to start.
func TestRun_RequiresDB(t *testing.T) {
	if err := run(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "-db is required") {
		t.Fatalf("run without -db: %v", err)
	}
}
