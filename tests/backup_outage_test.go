package tests

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/s3test"
)

// httpGet returns the status code and body of GET url (bounded).
func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricValue returns the text after "name " in a /metrics body.
func metricValue(body, name string) string {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// TestBackup_StoreOutageNeverBlocksCommits: with the store down, a write
// burst commits at full speed; the backup falls behind, counts errors, shows
// it in /metrics, /healthz (backup.max-lag) and litefs status, and catches
// up once the store is back.
func TestBackup_StoreOutageNeverBlocksCommits(t *testing.T) {
	srv := s3test.Start(t)
	n := StartNode(t, NodeOptions{Extra: backupYAML(srv, "o", "100ms") + "  max-lag: 1s\n"})
	c := backupClient(t, srv, "o")
	db := OpenDB(t, n.DBPath("app.db"), "_journal_mode=wal")
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	writeBurst(t, db, 0, 10)
	waitBackedUp(t, c, n, "app.db")
	if code, body := httpGet(t, n.URL()+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with the backup up to date = %d %s", code, body)
	}

	srv.Close()
	start := time.Now()
	writeBurst(t, db, 10, 200)
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("200 commits took %s with the store down: commits wait for the backup", d)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := httpGet(t, n.URL()+"/healthz")
		_, metrics := httpGet(t, n.URL()+"/metrics")
		errs := metricValue(metrics, `litefs_backup_errors_total{db="app.db"}`)
		if code == http.StatusServiceUnavailable && strings.Contains(body, "backup of app.db") && errs != "" && errs != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store down: /healthz = %d %q, backup errors metric %q", code, body, errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out, err := exec.Command(daemonPath(t), "status", "-url", n.URL()).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "BACKUP") || !strings.Contains(string(out), "retrying") {
		t.Fatalf("litefs status during the outage (%v):\n%s", err, out)
	}

	srv.Restart(t)
	pos := waitBackedUp(t, c, n, "app.db")
	rows := dumpBackupRows(t, db)
	checkRestored(t, litefsRestore(t, n, "app.db"), restorePoint{pos: pos, rows: rows})
	deadline = time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(t, n.URL()+"/healthz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: /healthz = %d %q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBackup_ThrottledStoreNeverBlocksCommits: a store answering every
// request with 503 SlowDown (through a fault proxy) during a write burst
// does not slow commits; the backup counts the errors, backs off, and
// catches up once the throttling stops.
func TestBackup_ThrottledStoreNeverBlocksCommits(t *testing.T) {
	srv := s3test.Start(t)
	proxy := s3test.StartFaultProxy(t, srv)
	yaml := strings.Replace(backupYAML(srv, "th", "100ms"), srv.Endpoint, proxy.Endpoint, 1)
	n := StartNode(t, NodeOptions{Extra: yaml})
	c := backupClient(t, srv, "th")
	db := OpenDB(t, n.DBPath("app.db"), "_journal_mode=wal")
	if _, err := db.Exec(`CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)`); err != nil {
		t.Fatal(err)
	}
	writeBurst(t, db, 0, 10)
	waitBackedUp(t, c, n, "app.db")

	proxy.Throttle(true)
	start := time.Now()
	writeBurst(t, db, 10, 200)
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("200 commits took %s with the store throttling: commits wait for the backup", d)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, metrics := httpGet(t, n.URL()+"/metrics")
		errs := metricValue(metrics, `litefs_backup_errors_total{db="app.db"}`)
		if proxy.Injected() > 0 && errs != "" && errs != "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("throttled: %d requests answered 503, backup errors metric %q", proxy.Injected(), errs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	proxy.Throttle(false)
	pos := waitBackedUp(t, c, n, "app.db")
	checkRestored(t, litefsRestore(t, n, "app.db"), restorePoint{pos: pos, rows: dumpBackupRows(t, db)})
}
