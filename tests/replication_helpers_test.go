package tests

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Helpers shared by the replication tests (SPEC sections 5, 7 and 12).

// ConvergeTimeout bounds the wait for replicas to reach the primary's
// position once the primary stops writing.
const ConvergeTimeout = 30 * time.Second

// startCluster starts a primary and n static replicas of it.
func startCluster(t *testing.T, n int, popts NodeOptions) (*Node, []*Node) {
	t.Helper()
	p := StartNode(t, popts)
	var rs []*Node
	for i := 0; i < n; i++ {
		rs = append(rs, StartNode(t, NodeOptions{Primary: p}))
	}
	return p, rs
}

// pos is a database position as <name>-pos shows it.
type pos struct {
	txid, sum uint64
}

func (p pos) String() string { return fmt.Sprintf("%016x/%016x", p.txid, p.sum) }

// tryReadPos reads <mnt>/<name>-pos without failing the test: the database
// may not exist on a replica yet.
func tryReadPos(n *Node, name string) (pos, error) {
	data, err := ReadFileTimeout(filepath.Join(n.MountDir, name+"-pos"), 10*time.Second)
	if err != nil {
		return pos{}, err
	}
	txid, sum, err := parsePos(string(data))
	return pos{txid, sum}, err
}

// readPos reads <mnt>/<name>-pos and fails the test on error.
func readPos(t testing.TB, n *Node, name string) pos {
	t.Helper()
	txid, sum := ReadPos(t, n, name)
	return pos{txid, sum}
}

// waitConverged polls until every replica shows the primary's position for
// every name, and returns the primary's positions. The primary must have
// stopped writing. It fails the test, showing every position, after limit.
func waitConverged(t testing.TB, limit time.Duration, p *Node, rs []*Node, names ...string) map[string]pos {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		want := map[string]pos{}
		var lines []string
		ok := true
		for _, name := range names {
			pp, err := tryReadPos(p, name)
			if err != nil {
				t.Fatalf("primary %s: %v", p.Name, err)
			}
			want[name] = pp
			for _, r := range rs {
				rp, err := tryReadPos(r, name)
				if err != nil || rp != pp {
					ok = false
					lines = append(lines, fmt.Sprintf("%s: primary %s, replica %s %s (err %v)", name, pp, r.Name, rp, err))
				}
			}
		}
		if ok {
			return want
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not reach the primary's position within %s:\n%s", limit, strings.Join(lines, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireReplicaFileMatchesPos checks that the checksum a replica's -pos
// claims equals a from-scratch checksum of its database file: a replica
// applies every transaction to the database file itself.
func requireReplicaFileMatchesPos(t testing.TB, r *Node, name string) pos {
	t.Helper()
	rp := readPos(t, r, name)
	if file := FileChecksum(t, dataFile(r, name, "database")); file != rp.sum {
		t.Fatalf("replica %s: %s-pos says %s, but %s has checksum %016x",
			r.Name, name, rp, dataFile(r, name, "database"), file)
	}
	return rp
}

// contentDigest summarises table t of the database at path (through a
// mount): integrity, row count, sums of ids and blob lengths, and a sample
// of blob bytes. Equal digests on two nodes mean equal content in practice;
// the page checksums prove the rest.
func contentDigest(t testing.TB, path string) string {
	t.Helper()
	db := OpenDB(t, path, "mode=ro")
	defer closeDB(t, db)
	if got := queryString(t, db, "PRAGMA integrity_check"); got != "ok" {
		t.Fatalf("%s: PRAGMA integrity_check = %q", path, got)
	}
	return queryString(t, db, `SELECT count(*) || '/' || coalesce(sum(id), 0) || '/' ||
		coalesce(total(length(v)), 0) || '/' || coalesce(sum(unicode(hex(substr(v, 1, 4)))), 0) FROM t`)
}

// apiRequest sends one HTTP request to node n's API and returns the status
// and body. A nil body sends none.
func apiRequest(t testing.TB, n *Node, method, path string, query url.Values, body io.Reader) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u := n.URL() + path
	if query != nil {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp.StatusCode, string(data)
}

// execTx runs the statements in one transaction.
func execTx(ctx context.Context, db *sql.DB, stmts ...string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return tx.Commit()
}

// ltxFiles lists the LTX file names in n's data directory for name.
func ltxFiles(t testing.TB, n *Node, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(n.DataDir, "dbs", name, "ltx"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".ltx") {
			out = append(out, e.Name())
		}
	}
	return out
}
