package tests

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/faultproxy"
)

// Helpers of the network-fault tests (netfault_*_test.go): every replica
// reaches the primary through its own faultproxy, named as the primary's
// advertise-url in the replica's litefs.yml, so a fault on one proxy cuts
// one replica off (its stream, HALT calls and forwarded commits alike).

// netHaltTTL is the halt.ttl of the network-fault clusters.
const netHaltTTL = 2 * time.Second

// netFaultExtra is the halt section of every node of those clusters.
var netFaultExtra = fmt.Sprintf("halt:\n  ttl: %s\n  renew-interval: 400ms\n  acquire-timeout: 10s\n", netHaltTTL)

// startProxy starts a fault proxy in front of target and closes it at the
// end of the test (after the nodes registered later have stopped).
func startProxy(t *testing.T, target string) *faultproxy.Proxy {
	t.Helper()
	px, err := faultproxy.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	return px
}

// startProxiedReplica starts a static replica of p that reaches p through
// its own new proxy.
func startProxiedReplica(t *testing.T, p *Node, name string) (*Node, *faultproxy.Proxy) {
	t.Helper()
	px := startProxy(t, p.Addr)
	return startReplicaVia(t, p, px, name, ""), px
}

// startReplicaVia starts a static replica of p whose advertise-url is px;
// leaseExtra is appended to its lease section (indented lines).
func startReplicaVia(t *testing.T, p *Node, px *faultproxy.Proxy, name, leaseExtra string) *Node {
	t.Helper()
	lease := fmt.Sprintf("lease:\n  type: static\n  candidate: false\n  hostname: %q\n  advertise-url: %q\n", p.Name, px.URL()) + leaseExtra
	return StartNode(t, NodeOptions{Name: name, Lease: lease, Extra: netFaultExtra})
}

// startProxiedCluster starts a primary and n replicas, each behind its own
// proxy, with a WAL database "f.db" holding table t(id, v) on every node.
func startProxiedCluster(t *testing.T, n int) (*Node, []*Node, []*faultproxy.Proxy, *sql.DB) {
	t.Helper()
	p := StartNode(t, NodeOptions{Extra: netFaultExtra})
	pdb := openModeDB(t, p, "f.db", journalModes[3])
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
	var rs []*Node
	var pxs []*faultproxy.Proxy
	for i := 0; i < n; i++ {
		r, px := startProxiedReplica(t, p, fmt.Sprintf("%s-r%d", p.Name, i+1))
		rs, pxs = append(rs, r), append(pxs, px)
	}
	waitConverged(t, ConvergeTimeout, p, rs, "f.db")
	return p, rs, pxs, pdb
}

// commitLog records the outcome of every single-row commit of a test: the
// value of the row and whether its COMMIT returned success.
type commitLog struct {
	mu     sync.Mutex
	acked  []string
	failed []string
	errs   []string
}

// insert commits one row with value v on db and records the outcome.
func (l *commitLog) insert(db *sql.DB, v string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, err := db.ExecContext(ctx, "INSERT INTO t(v) VALUES (?)", v)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed = append(l.failed, v)
		l.errs = append(l.errs, fmt.Sprintf("%.24s: %v", v, err))
		return err
	}
	l.acked = append(l.acked, v)
	return nil
}

// snapshot returns copies of the acknowledged and failed values.
func (l *commitLog) snapshot() (acked, failed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...), append([]string(nil), l.failed...)
}

// rowCounts returns how many rows of t hold each value, on node n.
func rowCounts(t *testing.T, n *Node, name string) map[string]int {
	t.Helper()
	db := OpenDB(t, n.DBPath(name), "mode=ro")
	defer closeDB(t, db)
	ctx, cancel := sqlCtx()
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT v, count(*) FROM t GROUP BY v")
	if err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var v string
		var c int
		if err := rows.Scan(&v, &c); err != nil {
			t.Fatal(err)
		}
		out[v] = c
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("node %s: %v", n.Name, err)
	}
	return out
}

// requireSameRowsEverywhere checks, on converged nodes, that every
// acknowledged value is there exactly once on every node, that no value
// is there twice (every value is written once), that the nodes hold the
// same values, and returns which of the failed values are present (the
// "unknown" outcome of SPEC's known gap 3).
func requireSameRowsEverywhere(t *testing.T, nodes []*Node, name string, acked, failed []string) []string {
	t.Helper()
	first := rowCounts(t, nodes[0], name)
	for _, n := range nodes {
		got := first
		if n != nodes[0] {
			got = rowCounts(t, n, name)
		}
		for _, v := range acked {
			if got[v] != 1 {
				t.Errorf("node %s: acknowledged row %q is there %d times, want 1", n.Name, v, got[v])
			}
		}
		for v, c := range got {
			if c > 1 && v != "primary" {
				t.Errorf("node %s: row %q is there %d times: a transaction applied twice", n.Name, v, c)
			}
			if first[v] != c {
				t.Errorf("node %s: row %q there %d times, on %s %d times", n.Name, v, c, nodes[0].Name, first[v])
			}
		}
		if len(got) != len(first) {
			t.Errorf("node %s has %d distinct rows, %s has %d", n.Name, len(got), nodes[0].Name, len(first))
		}
	}
	var present []string
	for _, v := range failed {
		if first[v] > 0 {
			present = append(present, v)
		}
	}
	sort.Strings(present)
	return present
}

// requireConvergedFiles waits until every replica has the primary's
// position and checks each replica's database file against its position's
// checksum; it returns the common position.
func requireConvergedFiles(t *testing.T, p *Node, rs []*Node, name string) pos {
	t.Helper()
	want := waitConverged(t, ConvergeTimeout, p, rs, name)[name]
	for _, r := range rs {
		if got := requireReplicaFileMatchesPos(t, r, name); got != want {
			t.Fatalf("replica %s at %s after converging to %s", r.Name, got, want)
		}
	}
	return want
}

// requireNoPanic fails the test if a node's log shows a panic or a race.
func requireNoPanic(t *testing.T, nodes ...*Node) {
	t.Helper()
	for _, n := range nodes {
		log := n.Log()
		for _, bad := range []string{"panic:", "DATA RACE"} {
			if strings.Contains(log, bad) {
				t.Errorf("node %s log shows %q", n.Name, bad)
			}
		}
	}
}
