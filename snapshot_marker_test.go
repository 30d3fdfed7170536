package litefs

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/superfly/ltx"
)

// snapshotReplica returns the directory of a replica store that received
// pdb's snapshot, and closes the store.
func snapshotReplica(t *testing.T, pdb *DB) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := pdb.WriteSnapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := openTestStore(t, dir)
	rdb, _ := s.CreateDB("a.db")
	if _, err := rdb.ApplyLTX(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if got := historyNames(t, rdb); len(got) != 0 {
		t.Fatalf("a snapshot left history files %v, want none (its marker records it)", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// markers returns the snapshot markers in the replica's database directory.
func markers(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "dbs", "a.db", snapshotMarkerPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// unlinkMarker gives the marker its own copy of content (as a staged file
// that never replaced the database would be).
func unlinkMarker(t *testing.T, dir string, content []byte) {
	t.Helper()
	m := markers(t, dir)
	if len(m) != 1 {
		t.Fatalf("markers %v, want one", m)
	}
	if err := os.Remove(m[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m[0], content, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestRecover_SettlesASnapshotMarker(t *testing.T) {
	pdb := primaryWithRows(t, 10, 30)
	want, err := os.ReadFile(pdb.path(FileDatabase))
	if err != nil {
		t.Fatal(err)
	}
	dbFile := func(dir string) string { return filepath.Join(dir, "dbs", "a.db", "database") }
	for _, tt := range []struct {
		name    string
		crash   func(t *testing.T, dir string)
		wantPos ltx.Pos
		history []string
	}{
		{"restart after a snapshot: its history file is written", func(*testing.T, string) {},
			pdb.Pos(), []string{ltxFileName(1, 2)}},
		{"crash before the staged file replaced the database: it is moved into place", func(t *testing.T, dir string) {
			unlinkMarker(t, dir, want)
			if err := os.WriteFile(dbFile(dir), makeSQLiteFile(t, 5), 0o644); err != nil {
				t.Fatal(err)
			}
		}, pdb.Pos(), []string{ltxFileName(1, 2)}},
		{"a marker that does not match its file is not trusted", func(t *testing.T, dir string) {
			unlinkMarker(t, dir, makeSQLiteFile(t, 5))
		}, ltx.Pos{TXID: 1, PostApplyChecksum: pdb.Pos().PostApplyChecksum}, []string{ltxFileName(1, 1)}},
		{"a marker of an empty file is not trusted", func(t *testing.T, dir string) {
			unlinkMarker(t, dir, nil)
		}, ltx.Pos{TXID: 1, PostApplyChecksum: pdb.Pos().PostApplyChecksum}, []string{ltxFileName(1, 1)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := snapshotReplica(t, pdb)
			tt.crash(t, dir)
			rdb := openTestStore(t, dir).DB("a.db")
			if got := rdb.Pos(); got != tt.wantPos {
				t.Fatalf("position %v, want %v", got, tt.wantPos)
			}
			if got, _ := os.ReadFile(dbFile(dir)); !bytes.Equal(got, want) {
				t.Fatal("database file differs from the primary's")
			}
			if got := historyNames(t, rdb); !slices.Equal(got, tt.history) {
				t.Fatalf("history %v, want %v", got, tt.history)
			}
			if m := markers(t, dir); len(m) != 0 {
				t.Fatalf("markers left: %v", m)
			}
		})
	}
}

func TestApplyLTX_AFileAfterASnapshotRemovesItsMarker(t *testing.T) {
	pdb := primaryWithRows(t, 10, 30)
	dir := snapshotReplica(t, pdb)
	writeTx(t, pdb, makeSQLiteFile(t, 40)) // TXID 3
	rdb := openTestStore(t, dir).DB("a.db")
	if m := markers(t, dir); len(m) != 0 {
		t.Fatalf("markers left after start-up: %v", m)
	}
	// Once more, while running: a new snapshot, then the next file.
	var buf bytes.Buffer
	if _, err := pdb.WriteSnapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	writeTx(t, pdb, makeSQLiteFile(t, 50)) // TXID 4
	if _, err := rdb.ApplyLTX(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	if m := markers(t, dir); len(m) != 1 {
		t.Fatalf("markers after a snapshot: %v, want one", m)
	}
	if _, err := rdb.ApplySpooled(context.Background(), spoolRange(t, pdb, rdb, 4)); err != nil {
		t.Fatal(err)
	}
	if m := markers(t, dir); len(m) != 0 {
		t.Fatalf("markers left after the next file: %v", m)
	}
	sameDatabase(t, pdb, rdb)
}
