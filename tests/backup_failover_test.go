package tests

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/backup"
	"github.com/litefs/litefs/internal/s3test"
)

// TestBackup_HandoffContinuesTheSameHistory: two consul candidates back up
// to one bucket; after a handoff the new primary appends to the history
// the old one wrote, with no gap and no duplicate, and a restore gives the
// new primary's database.
func TestBackup_HandoffContinuesTheSameHistory(t *testing.T) {
	srv := s3test.Start(t)
	agent := StartConsul(t)
	extra := backupYAML(srv, "ha", "100ms")
	n1 := consulNode(t, agent, "n1", true, NodeOptions{Extra: extra})
	waitRole(t, n1, "primary", 15*time.Second)
	n2 := consulNode(t, agent, "n2", true, NodeOptions{Extra: extra})
	waitRole(t, n2, "replica", 15*time.Second)
	c := backupClient(t, srv, "ha")
	createTable(t, n1, []*Node{n1, n2}, "app.db")
	for id := int64(1); id <= 20; id++ {
		if err := insertOnce(n1, "app.db", id, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitBackedUp(t, c, n1, "app.db")

	if code, body := apiRequest(t, n2, http.MethodPost, "/promote", nil, nil); code != http.StatusOK {
		t.Fatalf("POST /promote on n2: %d %s", code, body)
	}
	waitRole(t, n2, "primary", 10*time.Second)
	for id := int64(21); id <= 40; id++ {
		if err := insertOnce(n2, "app.db", id, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	pos := waitBackedUp(t, c, n2, "app.db")
	checkContiguous(t, c, "app.db")
	rows := dumpBackupRows(t, OpenDB(t, n2.DBPath("app.db"), "mode=ro"))
	checkRestored(t, litefsRestore(t, n2, "app.db"), restorePoint{pos: pos, rows: rows})
	for _, n := range []*Node{n1, n2} {
		if strings.Contains(n.Log(), "backup refused") {
			t.Fatalf("%s refused the shared history:\n%s", n.Name, n.Log())
		}
	}
}

// TestBackup_CrashFailoverContinuesTheSameHistory: the primary is
// SIGKILLed once its writes are replicated and backed up; the replica that
// takes over continues the bucket's history with no gap and no duplicate.
func TestBackup_CrashFailoverContinuesTheSameHistory(t *testing.T) {
	srv := s3test.Start(t)
	agent := StartConsul(t)
	extra := backupYAML(srv, "ha", "100ms")
	n1 := consulNode(t, agent, "n1", true, NodeOptions{Extra: extra})
	waitRole(t, n1, "primary", 15*time.Second)
	n2 := consulNode(t, agent, "n2", true, NodeOptions{Extra: extra})
	waitRole(t, n2, "replica", 15*time.Second)
	c := backupClient(t, srv, "ha")
	createTable(t, n1, []*Node{n1, n2}, "app.db")
	for id := int64(1); id <= 20; id++ {
		if err := insertOnce(n1, "app.db", id, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitConverged(t, ConvergeTimeout, n1, []*Node{n2}, "app.db")
	waitBackedUp(t, c, n1, "app.db")
	if err := n1.Kill(); err != nil {
		t.Fatal(err)
	}
	waitRole(t, n2, "primary", 30*time.Second)
	for id := int64(21); id <= 40; id++ {
		if err := insertOnce(n2, "app.db", id, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	pos := waitBackedUp(t, c, n2, "app.db")
	checkContiguous(t, c, "app.db")
	rows := dumpBackupRows(t, OpenDB(t, n2.DBPath("app.db"), "mode=ro"))
	checkRestored(t, litefsRestore(t, n2, "app.db"), restorePoint{pos: pos, rows: rows})
	if strings.Contains(n2.Log(), "backup refused") {
		t.Fatalf("n2 refused the shared history:\n%s", n2.Log())
	}
}

// checkContiguous checks that the level-0 files after the first snapshot
// follow one another with no gap and no overlap.
func checkContiguous(t testing.TB, c *backup.Client, name string) {
	t.Helper()
	ctx := context.Background()
	snaps, err := c.List(ctx, name, backup.SnapshotLevel)
	if err != nil || len(snaps) == 0 {
		t.Fatalf("snapshots: %v, %v", snaps, err)
	}
	files, err := c.List(ctx, name, 0)
	if err != nil {
		t.Fatal(err)
	}
	end := snaps[0].MaxTXID
	for _, f := range files {
		if f.MaxTXID <= snaps[0].MaxTXID {
			continue
		}
		if f.MinTXID != end+1 {
			t.Fatalf("level-0 file %s-%s does not follow txid %s (gap or duplicate); files %+v", f.MinTXID, f.MaxTXID, end, files)
		}
		end = f.MaxTXID
	}
}
