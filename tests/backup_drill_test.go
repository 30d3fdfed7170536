package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/s3test"
)

// TestBackup_TotalLossDrill: the only node's data directory is removed; the
// restarted node restores the database from the bucket before it mounts and
// before exec starts the application, which sees the last backed-up
// transaction; the node then continues the same history in the bucket.
func TestBackup_TotalLossDrill(t *testing.T) {
	srv := s3test.Start(t)
	n1 := StartNode(t, NodeOptions{Name: "drill", Extra: backupYAML(srv, "prod", "100ms")})
	c := backupClient(t, srv, "prod")
	db := OpenDB(t, n1.DBPath("app.db"), "_journal_mode=wal")
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	writeBurst(t, db, 0, 40)
	pos := waitBackedUp(t, c, n1, "app.db")
	rows := dumpBackupRows(t, db)
	_ = db.Close()
	if err := n1.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(n1.DataDir); err != nil {
		t.Fatal(err)
	}

	// The application: records what it sees at start, then keeps running.
	seen := filepath.Join(t.TempDir(), "seen")
	script := filepath.Join(t.TempDir(), "app.sh")
	body := "#!/bin/sh\nsqlite3 \"$MNT/app.db\" 'SELECT count(*) FROM t' >\"$SEEN\" 2>&1\nexec sleep 600\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	n2 := StartNode(t, NodeOptions{Name: "drill", Dir: n1.Dir, Extra: backupYAML(srv, "prod", "100ms"),
		Env: []string{"MNT=" + n1.MountDir, "SEEN=" + seen}, Args: []string{"--", script}})
	txid, sum := ReadPos(t, n2, "app.db")
	if txid != uint64(pos.TXID) || sum != uint64(pos.PostApplyChecksum) {
		t.Fatalf("restored node at %016x/%016x, the backup at %s", txid, sum, pos)
	}
	if got := dumpBackupRows(t, OpenDB(t, n2.DBPath("app.db"), "")); got != rows {
		t.Fatalf("restored rows differ from the last backed-up state")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(seen)
		if got := strings.TrimSpace(string(b)); got == "80" {
			break
		} else if got != "" || time.Now().After(deadline) {
			t.Fatalf("the application saw %q at start, want 80 rows (restored before exec)", got)
		}
		time.Sleep(50 * time.Millisecond)
	}

	db2 := OpenDB(t, n2.DBPath("app.db"), "_journal_mode=wal")
	writeBurst(t, db2, 40, 10)
	after := waitBackedUp(t, c, n2, "app.db")
	if after.TXID <= pos.TXID {
		t.Fatalf("bucket did not move on after the restore: %s", after)
	}
	checkRestored(t, litefsRestore(t, n2, "app.db"), restorePoint{pos: after, rows: dumpBackupRows(t, db2)})
	if strings.Contains(n2.Log(), "backup refused") {
		t.Fatalf("the restored node refused its own history:\n%s", n2.Log())
	}
}
