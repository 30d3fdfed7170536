package litefs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCreateDB_SideFilesOfTheName covers the two ways a database treats local
// files named like its side files (sidefiles.go): created through the mount
// it adopts them, with their content; created any other way (replication,
// import, a restart finding both) it renames them aside, content kept.
func TestCreateDB_SideFilesOfTheName(t *testing.T) {
	for _, tc := range []struct {
		name   string
		adopt  bool
		wantIn string // where NAME-journal's content must end up: "db" or "aside"
	}{
		{"created through the mount adopts them", true, "db"},
		{"created by replication renames them aside", false, "aside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, t.TempDir())
			journal := []byte("not a hot journal, but kept")
			local := filepath.Join(s.LocalDir(), "x.db-journal")
			if err := os.WriteFile(local, journal, 0o644); err != nil {
				t.Fatal(err)
			}
			var db *DB
			var adopted []string
			var err error
			if tc.adopt {
				db, adopted, err = s.CreateDBAdopting("x.db")
			} else {
				db, err = s.CreateDB("x.db")
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(local); !os.IsNotExist(err) {
				t.Fatalf("local x.db-journal still there (stat error %v)", err)
			}
			path := db.path(FileJournal)
			if tc.wantIn == "aside" {
				matches, _ := filepath.Glob(local + ".orphaned-*")
				if len(matches) != 1 {
					t.Fatalf("renamed-aside files: %v, want one", matches)
				}
				path = matches[0]
			} else if !slices.Equal(adopted, []string{"x.db-journal"}) || !db.Exists(FileJournal) {
				t.Fatalf("adopted %v, journal exists %v", adopted, db.Exists(FileJournal))
			}
			if got, err := os.ReadFile(path); err != nil || string(got) != string(journal) {
				t.Fatalf("content at %s: %q, %v", path, got, err)
			}
			if db.journalHot {
				t.Fatalf("a journal without the magic was taken as hot")
			}
		})
	}
}

// TestOpenStore_RenamesAsideSideFilesOfExistingDatabases: a data directory
// left by a version that did not adopt holds a database and a local file
// named like its side file; the local file goes aside at start.
func TestOpenStore_RenamesAsideSideFilesOfExistingDatabases(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if _, err := s.CreateDB("y.db"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.LocalDir(), "y.db-wal"), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	ents, err := os.ReadDir(s.LocalDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), "y.db-wal.orphaned-") {
		t.Fatalf("local files after restart: %v, want y.db-wal renamed aside", ents)
	}
}
