package tests

import (
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/s3test"
)

// TestBackup_KilledMidUploadLeavesTheBucketRestorable SIGKILLs the daemon
// right after write bursts, while uploads, snapshots and retention passes
// run (sync every 20ms, snapshot every 200ms, retention 500ms). After every
// kill the bucket restores (chain and checksum verified, integrity ok);
// after the last restart the node continues the history without refusing
// it and the bucket catches up with every row.
func TestBackup_KilledMidUploadLeavesTheBucketRestorable(t *testing.T) {
	srv := s3test.Start(t)
	yaml := backupYAML(srv, "crash", "20ms") + "  snapshot-interval: 200ms\n  retention: 500ms\n"
	n := StartNode(t, NodeOptions{Extra: yaml})
	c := backupClient(t, srv, "crash")
	RunSQLite3(t, n.DBPath("app.db"), "PRAGMA journal_mode=wal; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")
	waitBackedUp(t, c, n, "app.db")
	for round := 0; round < 5; round++ {
		db, err := sql.Open("sqlite3", "file:"+n.DBPath("app.db")+"?_busy_timeout=5000&_journal_mode=wal")
		if err != nil {
			t.Fatal(err)
		}
		writeBurst(t, db, round*40, 40)
		time.Sleep(time.Duration(round*15) * time.Millisecond)
		if err := n.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = db.Close() // its mount is gone; the error does not matter
		out := litefsRestore(t, n, "app.db")
		if got := strings.TrimSpace(RunSQLite3(t, out, "PRAGMA integrity_check;")); got != "ok" {
			t.Fatalf("round %d: restore after a kill: integrity_check = %q", round, got)
		}
		n.Restart(t)
	}
	db := OpenDB(t, n.DBPath("app.db"), "_journal_mode=wal")
	writeBurst(t, db, 1000, 5)
	pos := waitBackedUp(t, c, n, "app.db")
	checkRestored(t, litefsRestore(t, n, "app.db"), restorePoint{pos: pos, rows: dumpBackupRows(t, db)})
	if strings.Contains(n.Log(), "backup refused") {
		t.Fatalf("the node refused its own history after a crash:\n%s", n.Log())
	}
}
