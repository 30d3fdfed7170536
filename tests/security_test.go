package tests

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/superfly/ltx"
)

// strangerID is the Litefs-Id of a client that never opened a replication
// stream: not a replica of the cluster.
const strangerID = "00000000deadbeef"

// strangerCall sends one request to n's API as the stranger and returns
// the status and body.
func strangerCall(t *testing.T, n *Node, method, path string, body []byte) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Litefs-Id", strangerID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// forgedTx builds the transaction the attacker sent: the next TXID,
// the right pre- and post-apply checksums, page 2 filled with 0xAB. Applied,
// it would make the database malformed.
func forgedTx(t *testing.T, dbPath string, at pos) []byte {
	t.Helper()
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	ps := uint32(binary.BigEndian.Uint16(data[16:18]))
	if ps == 1 {
		ps = 65536
	}
	if len(data) < int(2*ps) {
		t.Fatalf("setup: database of %d bytes has no page 2", len(data))
	}
	old := data[ps : 2*ps]
	page := bytes.Repeat([]byte{0xAB}, int(ps))
	post := ltx.Checksum(at.sum) ^ ltx.ChecksumPage(2, old) ^ ltx.ChecksumPage(2, page) | ltx.ChecksumFlag
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	hdr := ltx.Header{
		Version: ltx.Version, PageSize: ps, Commit: uint32(len(data)) / ps,
		MinTXID: ltx.TXID(at.txid + 1), MaxTXID: ltx.TXID(at.txid + 1),
		Timestamp: time.Now().UnixMilli(), PreApplyChecksum: ltx.Checksum(at.sum),
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 2}, page); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(post)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSecurity_AStrangerCannotTakeTheHaltOrWriteThroughIt replays the attack
// of issue 14 against a cluster without an auth token: a made-up node id
// asks for the HALT and ships a well-formed transaction that would corrupt
// page 2. Both are refused with 403, no node changes, and the primary's
// writers are never blocked.
func TestSecurity_AStrangerCannotTakeTheHaltOrWriteThroughIt(t *testing.T) {
	RequireFUSE(t)
	p, rs := startCluster(t, 1, NodeOptions{})
	r := rs[0]
	RunSQLite3(t, p.DBPath("app.db"), "CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('a'), ('b');")
	want := waitConverged(t, ConvergeTimeout, p, rs, "app.db")["app.db"]
	lockID := fmt.Sprintf("%016x", time.Now().UnixNano()|1)

	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
	}{
		{"acquire", "POST", "/halt?name=app.db&id=" + lockID, nil},
		{"renew", "POST", "/halt?name=app.db&renew=1&id=" + lockID, nil},
		{"forged transaction", "POST", "/tx?name=app.db&id=" + lockID, forgedTx(t, p.DBPath("app.db"), want)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := strangerCall(t, p, tt.method, tt.path, tt.body)
			if code != http.StatusForbidden || !strings.Contains(body, "replication stream") {
				t.Fatalf("status %d %s, want 403 naming the missing replication stream", code, body)
			}
		})
	}
	if !strings.Contains(p.Log(), "refused HALT request") {
		t.Fatal("the primary did not log the refusal")
	}
	// A writer with no busy timeout is not blocked by any HALT.
	RunSQLite3(t, p.DBPath("app.db"), "PRAGMA busy_timeout=0; INSERT INTO t VALUES ('c');")
	after := waitConverged(t, ConvergeTimeout, p, rs, "app.db")["app.db"]
	if after.txid != want.txid+1 {
		t.Fatalf("position %v after one more write from %v: something else was applied", after, want)
	}
	for _, n := range []*Node{p, r} {
		if got := RunSQLite3(t, n.DBPath("app.db"), "PRAGMA integrity_check; SELECT group_concat(x) FROM t;"); got != "ok\na,b,c\n" {
			t.Fatalf("%s: %q, want an intact database with a,b,c", n.Name, got)
		}
	}
}

// TestSecurity_PrimaryFileAbsentUntilTheReplicaReachesItsPrimary starts a
// primary whose token (from LITEFS_AUTH_TOKEN) the replica lacks: the
// replica is refused with 401 and must not claim a primary in .primary
// (litefs-js would trust it); once it has the token, .primary names the
// primary.
func TestSecurity_PrimaryFileAbsentUntilTheReplicaReachesItsPrimary(t *testing.T) {
	RequireFUSE(t)
	p := StartNode(t, NodeOptions{Env: []string{"LITEFS_AUTH_TOKEN=s3cret"}})
	r := StartNode(t, NodeOptions{Primary: p, Env: []string{"LITEFS_AUTH_TOKEN=wrong"}})
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(r.Log(), "401") {
		if time.Now().After(deadline) {
			t.Fatalf("the replica was never refused with 401; its log:\n%s", r.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := statTimeout(r.MountDir+"/.primary", 10*time.Second); !os.IsNotExist(err) {
		t.Fatalf("stat .primary on a replica refused by its primary: %v, want it absent", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	r2 := StartNode(t, NodeOptions{Primary: p, Dir: r.Dir, Env: []string{"LITEFS_AUTH_TOKEN=s3cret"}})
	deadline = time.Now().Add(20 * time.Second)
	for {
		data, err := ReadFileTimeout(r2.MountDir+"/.primary", 10*time.Second)
		if err == nil && string(data) == p.Name+"\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf(".primary on the connected replica: %q (%v), want %q", data, err, p.Name+"\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
