package tests

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/litefs/litefs/backup"
	"github.com/litefs/litefs/internal/s3test"
)

// TestBackup_RetentionKeepsRestorePointsInsideTheWindow: with snapshots
// every 500ms and a 3s retention, a long write run leaves a bounded number
// of objects (old snapshots and level-0 files are removed), every kept
// level-0 file is newer than the oldest kept snapshot, and the latest
// state and a point inside the window still restore.
func TestBackup_RetentionKeepsRestorePointsInsideTheWindow(t *testing.T) {
	srv := s3test.Start(t)
	yaml := backupYAML(srv, "ret", "100ms") + "  snapshot-interval: 500ms\n  retention: 3s\n"
	n := StartNode(t, NodeOptions{Extra: yaml})
	c := backupClient(t, srv, "ret")
	db := OpenDB(t, n.DBPath("app.db"), "_journal_mode=wal")
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var inside restorePoint
	var early []backup.FileInfo // the first snapshot and level-0 file
	for i := 0; i < 30; i++ {
		writeBurst(t, db, i*5, 5)
		if i == 1 {
			waitBackedUp(t, c, n, "app.db")
			s, err1 := c.List(ctx, "app.db", backup.SnapshotLevel)
			l0, err2 := c.List(ctx, "app.db", 0)
			if err1 != nil || err2 != nil || len(s) == 0 || len(l0) == 0 {
				t.Fatalf("early listing: %d snapshots (%v), %d level-0 files (%v)", len(s), err1, len(l0), err2)
			}
			early = []backup.FileInfo{s[0], l0[0]}
		}
		if i == 28 {
			inside = restorePoint{pos: waitBackedUp(t, c, n, "app.db"), rows: dumpBackupRows(t, db)}
		}
		time.Sleep(150 * time.Millisecond)
	}
	last := restorePoint{pos: waitBackedUp(t, c, n, "app.db"), rows: dumpBackupRows(t, db)}
	time.Sleep(time.Second) // a last snapshot and retention pass
	snaps, err := c.List(ctx, "app.db", backup.SnapshotLevel)
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.List(ctx, "app.db", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) == 0 || len(snaps) > 10 {
		t.Fatalf("%d snapshots kept with snapshots every 500ms and 3s retention, want 1 to 10", len(snaps))
	}
	for _, e := range early {
		for _, f := range append(snaps, files...) {
			if f.Level == e.Level && f.MinTXID == e.MinTXID && f.MaxTXID == e.MaxTXID {
				t.Fatalf("level %d file %s-%s from the start is still there after 6s with a 3s retention", e.Level, e.MinTXID, e.MaxTXID)
			}
		}
	}
	for _, f := range files {
		if f.MaxTXID <= snaps[0].MaxTXID {
			t.Fatalf("level-0 file %s-%s is older than the oldest kept snapshot (txid %s): retention kept it", f.MinTXID, f.MaxTXID, snaps[0].MaxTXID)
		}
	}
	_, metrics := httpGet(t, n.URL()+"/metrics")
	if got, want := metricValue(metrics, `litefs_backup_objects{db="app.db"}`), fmt.Sprint(len(snaps)+len(files)); got != want {
		t.Errorf("litefs_backup_objects = %q, the bucket holds %s", got, want)
	}
	checkRestored(t, litefsRestore(t, n, "app.db"), last)
	checkRestored(t, litefsRestore(t, n, "app.db", "-txid", inside.pos.TXID.String()), inside)
}
