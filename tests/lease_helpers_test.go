package tests

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/consultest"
)

// consulNode starts a node whose lease is the Consul agent's.
func consulNode(t *testing.T, agent *consultest.Agent, name string, candidate bool, extra NodeOptions) *Node {
	t.Helper()
	opts := extra
	opts.Name = name
	lease := ConsulLease{URL: agent.URL, Candidate: candidate}
	if opts.Consul != nil {
		lease = *opts.Consul
		lease.URL, lease.Candidate = agent.URL, candidate
	}
	opts.Consul = &lease
	return StartNode(t, opts)
}

// startConsulCluster starts n candidates on the agent: the first becomes
// primary before the others start.
func startConsulCluster(t *testing.T, agent *consultest.Agent, n int) []*Node {
	t.Helper()
	first := consulNode(t, agent, "n1", true, NodeOptions{Extra: "log:\n  timestamp: true\n"})
	waitRole(t, first, "primary", 15*time.Second)
	nodes := []*Node{first}
	for i := 2; i <= n; i++ {
		nodes = append(nodes, consulNode(t, agent, fmt.Sprintf("n%d", i), true, NodeOptions{Extra: "log:\n  timestamp: true\n"}))
	}
	for _, r := range nodes[1:] {
		waitRole(t, r, "replica", 15*time.Second)
	}
	return nodes
}

// nodeInfo is the part of GET /info the lease tests read.
type nodeInfo struct {
	NodeID  string `json:"nodeID"`
	Role    string `json:"role"`
	Primary struct {
		URL string `json:"url"`
	} `json:"primary"`
	Connected bool  `json:"connected"`
	LagMillis int64 `json:"lagMillis"`
}

// infoOf reads GET /info of n within one second; an unreachable node is an
// error (it may be down).
func infoOf(n *Node) (nodeInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/info", nil)
	if err != nil {
		return nodeInfo{}, err
	}
	resp, err := n.HTTPClient().Do(req)
	if err != nil {
		return nodeInfo{}, err
	}
	defer resp.Body.Close()
	var info nodeInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nodeInfo{}, fmt.Errorf("decode /info of %s: %w", n.Name, err)
	}
	return info, nil
}

// waitRole waits until n reports role ("primary" or "replica"; a replica
// must also follow a primary, connected and caught up).
func waitRole(t testing.TB, n *Node, role string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last nodeInfo
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = infoOf(n)
		if lastErr == nil && last.Role == role && (role == "primary" || last.Connected && last.LagMillis < 1<<31-1) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not become %s within %s: last /info %+v (err %v)", n.Name, role, limit, last, lastErr)
}

// waitNewPrimary waits until one of nodes reports role primary and returns it.
func waitNewPrimary(t testing.TB, nodes []*Node, limit time.Duration) *Node {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if info, err := infoOf(n); err == nil && info.Role == "primary" {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no primary among %d nodes within %s", len(nodes), limit)
	return nil
}

// ackLog records every acknowledged insert: id -> node that took it.
type ackLog struct {
	mu   sync.Mutex
	acks map[int64]string
}

func (a *ackLog) add(id int64, node string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.acks == nil {
		a.acks = map[int64]string{}
	}
	a.acks[id] = node
}

func (a *ackLog) ids() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]int64, 0, len(a.acks))
	for id := range a.acks {
		out = append(out, id)
	}
	return out
}

// requireRows fails unless every acknowledged id is a row of table t in the
// database at path (through a mount).
func requireRows(t testing.TB, n *Node, name string, acks *ackLog) {
	t.Helper()
	db := OpenDB(t, n.DBPath(name), "mode=ro")
	defer closeDB(t, db)
	have := map[int64]bool{}
	rows, err := db.Query("SELECT id FROM t")
	if err != nil {
		t.Fatalf("%s: read rows: %v", n.Name, err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: read rows: %v", n.Name, err)
	}
	rows.Close()
	var missing []string
	for _, id := range acks.ids() {
		if !have[id] {
			missing = append(missing, fmt.Sprint(id))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s is missing %d acknowledged rows (of %d): %s", n.Name, len(missing), len(acks.ids()), strings.Join(missing[:min(20, len(missing))], ","))
	}
}

// insertOnce opens the database on n, inserts row id and closes it: a
// write that only a primary accepts. It is bounded by limit.
func insertOnce(n *Node, name string, id int64, limit time.Duration) error {
	db, err := sql.Open("sqlite3", "file:"+n.DBPath(name)+"?_busy_timeout=50&_journal_mode=WAL")
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	_, err = db.ExecContext(ctx, "INSERT INTO t(id, v) VALUES(?, 'x')", id)
	return err
}
