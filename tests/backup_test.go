package tests

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/backup"
	"github.com/litefs/litefs/internal/s3test"
	"github.com/superfly/ltx"
)

// backupYAML is the backup section of a node writing to srv under prefix.
func backupYAML(srv *s3test.Server, prefix, syncInterval string) string {
	return fmt.Sprintf("backup:\n  type: s3\n  bucket: %q\n  path: %q\n  endpoint: %q\n  region: %q\n  force-path-style: true\n  sync-interval: %q\n",
		srv.Bucket, prefix, srv.Endpoint, s3test.Region, syncInterval)
}

// backupClient is a client of srv's bucket under prefix.
func backupClient(t testing.TB, srv *s3test.Server, prefix string) *backup.Client {
	t.Helper()
	c, err := backup.NewClient(context.Background(), srv.Config(prefix))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitBackedUp waits until the bucket's head for name is node n's position
// and returns it.
func waitBackedUp(t testing.TB, c *backup.Client, n *Node, name string) ltx.Pos {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		txid, sum := ReadPos(t, n, name)
		h, err := c.Head(context.Background(), name)
		if err == nil && uint64(h.Pos.TXID) == txid && uint64(h.Pos.PostApplyChecksum) == sum {
			return h.Pos
		}
		if time.Now().After(deadline) {
			t.Fatalf("bucket head of %s = %+v (err %v), node at %016x/%016x after 30s", name, h.Pos, err, txid, sum)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dumpBackupRows returns every row of table t, in id order, as one string.
func dumpBackupRows(t testing.TB, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT id, v FROM t ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id int
		var v string
		if err := rows.Scan(&id, &v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%d=%s\n", id, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// restorePoint is a state the test saw fully backed up.
type restorePoint struct {
	pos  ltx.Pos
	at   time.Time
	rows string
}

// writeBurst commits n transactions of a few rows each into db.
func writeBurst(t testing.TB, db *sql.DB, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		if _, err := db.Exec(`INSERT INTO t (id, v) VALUES (?, ?), (?, ?)`, 2*i, strings.Repeat("x", i%50), 2*i+1, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
}

// litefsRestore runs `litefs restore` with the node's config and returns
// the restored file's path.
func litefsRestore(t testing.TB, n *Node, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	argv := append([]string{"restore", "-config", n.ConfigPath, "-name", name, "-o", out}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonPath(t), argv...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litefs %s: %v\n%s", strings.Join(argv, " "), err, b)
	}
	return out
}

// checkRestored opens a restored file and compares its rows, integrity and
// checksum with want.
func checkRestored(t testing.TB, path string, want restorePoint) {
	t.Helper()
	if got := FileChecksum(t, path); got != uint64(want.pos.PostApplyChecksum) {
		t.Errorf("%s: checksum %016x, want %s (txid %s)", path, got, want.pos.PostApplyChecksum, want.pos.TXID)
	}
	if got := strings.TrimSpace(RunSQLite3(t, path, "PRAGMA integrity_check;")); got != "ok" {
		t.Errorf("%s: integrity_check = %q", path, got)
	}
	db := OpenDB(t, path, "mode=ro")
	if got := dumpBackupRows(t, db); got != want.rows {
		t.Errorf("%s (txid %s): rows differ from what the database held then:\n got %d bytes\nwant %d bytes", path, want.pos.TXID, len(got), len(want.rows))
	}
}

// TestBackup_RestoreToLatestEarlierTXIDsAndTimestamps writes bursts of
// transactions with backup on (WAL and rollback journal), records states
// the bucket reached, and restores each one with `litefs restore` by TXID
// and by timestamp, and the latest, comparing row by row.
func TestBackup_RestoreToLatestEarlierTXIDsAndTimestamps(t *testing.T) {
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			srv := s3test.Start(t)
			n := StartNode(t, NodeOptions{Extra: backupYAML(srv, "cluster", "100ms") + "  compaction-interval: 300ms\n"})
			c := backupClient(t, srv, "cluster")
			db := OpenDB(t, n.DBPath("app.db"), "_journal_mode="+mode)
			if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
				t.Fatal(err)
			}
			var points []restorePoint
			txs := 0
			for burst := 0; burst < 4; burst++ {
				writeBurst(t, db, burst*25, 25)
				txs += 25
				pos := waitBackedUp(t, c, n, "app.db")
				points = append(points, restorePoint{pos: pos, at: time.Now(), rows: dumpBackupRows(t, db)})
				time.Sleep(400 * time.Millisecond) // the next commit is strictly later; a compaction runs
			}
			level0, err := c.List(context.Background(), "app.db", 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(level0) >= txs {
				t.Errorf("%d level-0 objects for %d transactions: uploads are not batched", len(level0), txs)
			}
			if l1, err := c.List(context.Background(), "app.db", backup.CompactionLevel); err != nil || len(l1) == 0 {
				t.Fatalf("no level-1 file after the bursts (%v): compaction did not run", err)
			}
			last := points[len(points)-1]
			checkRestored(t, litefsRestore(t, n, "app.db"), last)
			for _, p := range points {
				checkRestored(t, litefsRestore(t, n, "app.db", "-txid", p.pos.TXID.String()), p)
				checkRestored(t, litefsRestore(t, n, "app.db", "-timestamp", p.at.UTC().Format(time.RFC3339Nano)), p)
			}
		})
	}
}

// TestBackup_LitestreamRestoresOurBucket: Litestream v0.5 restores the
// bucket litefs wrote to the same database (checksum, integrity, rows).
func TestBackup_LitestreamRestoresOurBucket(t *testing.T) {
	ls := s3test.Require(t, s3test.FindLitestream)
	srv := s3test.Start(t)
	n := StartNode(t, NodeOptions{Extra: backupYAML(srv, "lfs", "100ms") + "  compaction-interval: 200ms\n"})
	c := backupClient(t, srv, "lfs")
	db := OpenDB(t, n.DBPath("app.db"), "_journal_mode=wal")
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	writeBurst(t, db, 0, 30)
	waitBackedUp(t, c, n, "app.db")
	writeBurst(t, db, 30, 30)
	waitBackedUp(t, c, n, "app.db")
	time.Sleep(400 * time.Millisecond) // a compaction into level 1
	writeBurst(t, db, 60, 5)
	pos := waitBackedUp(t, c, n, "app.db")
	if l1, err := c.List(context.Background(), "app.db", backup.CompactionLevel); err != nil || len(l1) == 0 {
		t.Fatalf("no level-1 file (%v): Litestream would not read a compacted level", err)
	}
	want := restorePoint{pos: pos, rows: dumpBackupRows(t, db)}

	out := filepath.Join(t.TempDir(), "app.db")
	url := fmt.Sprintf("s3://%s/lfs/app.db?endpoint=%s&region=%s&forcePathStyle=true", srv.Bucket, srv.Endpoint, s3test.Region)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ls, "restore", "-o", out, url)
	// Litestream v0.5.18 refuses to start with AWS_CA_BUNDLE set ("unable
	// to add custom RootCAs HTTPClient"); this store is plain HTTP anyway.
	cmd.Env = withoutEnv(os.Environ(), "AWS_CA_BUNDLE")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("litestream restore %s: %v\n%s", url, err, b)
	}
	checkRestored(t, out, want)
}

// withoutEnv returns env without the variable key.
func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}
