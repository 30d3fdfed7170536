package litefs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/superfly/ltx"
)

// historyNames returns the names of the LTX files of db, in order.
func historyNames(t *testing.T, db *DB) []string {
	t.Helper()
	files, err := listLTX(db.LTXDir())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range files {
		names = append(names, ltxFileName(r.min, r.max))
	}
	return names
}

// primaryWithRows returns a.db of a new store after one transaction per
// entry of rows (TXID 1, 2, ...), each leaving that many rows.
func primaryWithRows(t *testing.T, rows ...int) *DB {
	t.Helper()
	db, _ := openTestStore(t, t.TempDir()).CreateDB("a.db")
	for _, n := range rows {
		writeTx(t, db, makeSQLiteFile(t, n))
	}
	return db
}

// sameDatabase fails unless a and b have the same position and database file.
func sameDatabase(t *testing.T, a, b *DB) {
	t.Helper()
	x, _ := os.ReadFile(a.path(FileDatabase))
	y, _ := os.ReadFile(b.path(FileDatabase))
	if !bytes.Equal(x, y) || a.Pos() != b.Pos() {
		t.Fatalf("databases differ: %v (%d bytes) and %v (%d bytes)", a.Pos(), len(x), b.Pos(), len(y))
	}
}

func TestApplySpooled_StoresConsecutiveFilesAsOneHistoryFile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		rows    []int    // rows of TXID 1, 2, ...; a replica at TXID 1 gets the rest in one batch
		history []string // TXID 1 came as a snapshot, which leaves no history file
	}{
		{"a growing database: one file for the batch", []int{10, 20, 30, 40, 50},
			[]string{ltxFileName(2, 5)}},
		{"a shrink starts a new file", []int{10, 50, 60, 20, 35, 60},
			[]string{ltxFileName(2, 3), ltxFileName(4, 4), ltxFileName(5, 6)}},
		{"a batch of one is stored as it arrived", []int{10, 20},
			[]string{ltxFileName(2, 2)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pdb := primaryWithRows(t, tt.rows...)
			var txids []ltx.TXID
			for i := range tt.rows {
				txids = append(txids, ltx.TXID(i+1))
			}
			replica := openTestStore(t, t.TempDir())
			rdb, _ := replica.CreateDB("a.db")
			ctx := context.Background()
			if _, err := rdb.ApplySpooled(ctx, spoolRange(t, pdb, rdb, 1)); err != nil {
				t.Fatal(err)
			}
			firstPos := rdb.Pos().PostApplyChecksum
			if _, err := rdb.ApplySpooled(ctx, spoolRange(t, pdb, rdb, txids[1:]...)); err != nil {
				t.Fatal(err)
			}
			sameDatabase(t, pdb, rdb)
			if got := historyNames(t, rdb); !slices.Equal(got, tt.history) {
				t.Fatalf("history %v, want %v", got, tt.history)
			}
			// Every history file is a valid LTX file that continues the one
			// before it, from the snapshot of TXID 1.
			prev := ltx.Pos{TXID: 1, PostApplyChecksum: firstPos}
			for _, name := range tt.history {
				hdr, trailer, err := readLTXFile(filepath.Join(rdb.LTXDir(), name), nil)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if hdr.PreApplyPos() != prev {
					t.Fatalf("%s starts at %v, the file before ends at %v", name, hdr.PreApplyPos(), prev)
				}
				prev = ltx.Pos{TXID: hdr.MaxTXID, PostApplyChecksum: trailer.PostApplyChecksum}
			}
			if prev != pdb.Pos() {
				t.Fatalf("history ends at %v, primary at %v", prev, pdb.Pos())
			}
		})
	}
}

// TestRecover_ReappliesAMergedFileTheDatabaseLost: a crash after a batch's
// merged file was stored but before its pages reached the database file.
func TestRecover_ReappliesAMergedFileTheDatabaseLost(t *testing.T) {
	pdb := primaryWithRows(t, 10, 20, 30, 40)
	dir := t.TempDir()
	replica := openTestStore(t, dir)
	rdb, _ := replica.CreateDB("a.db")
	ctx := context.Background()
	if _, err := rdb.ApplySpooled(ctx, spoolRange(t, pdb, rdb, 1)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(rdb.path(FileDatabase))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rdb.ApplySpooled(ctx, spoolRange(t, pdb, rdb, 2, 3, 4)); err != nil {
		t.Fatal(err)
	}
	replica.Close()
	if err := os.WriteFile(filepath.Join(dir, "dbs", "a.db", "database"), before, 0o644); err != nil {
		t.Fatal(err)
	}
	reopened := openTestStore(t, dir)
	sameDatabase(t, pdb, reopened.DB("a.db"))
}

// TestApplySpooled_AppliesAMergedFileServedByAPromotedReplica: after a
// failover the new primary serves its merged history file to a replica that
// is at the file's start.
func TestApplySpooled_AppliesAMergedFileServedByAPromotedReplica(t *testing.T) {
	pdb := primaryWithRows(t, 10, 20, 30, 40)
	ctx := context.Background()
	var replicas []*DB
	for range 2 {
		s := openTestStore(t, t.TempDir())
		db, _ := s.CreateDB("a.db")
		if _, err := db.ApplySpooled(ctx, spoolRange(t, pdb, db, 1)); err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, db)
	}
	promoted, other := replicas[0], replicas[1]
	if _, err := promoted.ApplySpooled(ctx, spoolRange(t, pdb, promoted, 2, 3, 4)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.ApplySpooled(ctx, spoolRange(t, promoted, other, 2)); err != nil {
		t.Fatal(err)
	}
	sameDatabase(t, pdb, other)
}

// TestApplyAll_RefusesAFirstFileThatNoLongerFollows: a first file checked
// before the lock-out is checked again when it is applied (the database may
// have moved meanwhile), whether it is merged or applied alone.
func TestApplyAll_RefusesAFirstFileThatNoLongerFollows(t *testing.T) {
	pdb := primaryWithRows(t, 10, 20, 30)
	replica := openTestStore(t, t.TempDir())
	rdb, _ := replica.CreateDB("a.db")
	ctx := context.Background()
	if _, err := rdb.ApplySpooled(ctx, spoolRange(t, pdb, rdb, 1)); err != nil {
		t.Fatal(err)
	}
	files := spoolRange(t, pdb, rdb, 3)
	defer files[0].Discard()
	if _, err := rdb.applyAll(ctx, daemonOwner, []*incomingLTX{files[0].in}, true); !errors.Is(err, ErrPosMismatch) {
		t.Fatalf("apply error %v, want %v", err, ErrPosMismatch)
	}
	if got := rdb.Pos().TXID; got != 1 {
		t.Fatalf("replica at TXID %s, want 1", got)
	}
}
