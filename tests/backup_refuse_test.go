package tests

import (
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/s3test"
)

// TestBackup_RefusesBucketAheadOrDiverged: a node whose own app.db has a
// different history than the bucket's (fewer transactions: the bucket is
// ahead; more: diverged by checksum) never writes to the bucket, and logs
// why.
func TestBackup_RefusesBucketAheadOrDiverged(t *testing.T) {
	for _, tt := range []struct {
		name   string
		txs    int
		reason string
	}{
		{"bucket ahead", 5, "bucket is ahead"},
		{"diverged", 60, "diverged at txid"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := s3test.Start(t)
			a := StartNode(t, NodeOptions{Extra: backupYAML(srv, "shared", "100ms")})
			c := backupClient(t, srv, "shared")
			dba := OpenDB(t, a.DBPath("app.db"), "_journal_mode=wal")
			if _, err := dba.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
				t.Fatal(err)
			}
			writeBurst(t, dba, 0, 30)
			head := waitBackedUp(t, c, a, "app.db")
			_ = dba.Close()
			if err := a.Stop(); err != nil {
				t.Fatal(err)
			}

			b := StartNode(t, NodeOptions{})
			dbb := OpenDB(t, b.DBPath("app.db"), "_journal_mode=wal")
			if _, err := dbb.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, other INT)`); err != nil {
				t.Fatal(err)
			}
			writeBurst(t, dbb, 1000, tt.txs)
			_ = dbb.Close()
			if err := b.Stop(); err != nil {
				t.Fatal(err)
			}
			b2 := StartNode(t, NodeOptions{Name: b.Name, Dir: b.Dir, Extra: backupYAML(srv, "shared", "100ms")})
			deadline := time.Now().Add(15 * time.Second)
			for !strings.Contains(b2.Log(), tt.reason) {
				if time.Now().After(deadline) {
					t.Fatalf("no refusal with %q in the log after 15s", tt.reason)
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond) // several sync intervals
			got, err := c.Head(t.Context(), "app.db")
			if err != nil {
				t.Fatal(err)
			}
			if got.Pos != head {
				t.Fatalf("bucket head moved from %s to %s: it was overwritten", head, got.Pos)
			}
		})
	}
}
