package tests

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// Targets of issue 4 (docs/lifecycle.md).
const (
	crashFailoverTarget = 5 * time.Second
	handoffGapTarget    = 300 * time.Millisecond
)

// createTable makes table t on the primary p and waits until nodes have it.
func createTable(t *testing.T, p *Node, nodes []*Node, name string) {
	t.Helper()
	db := OpenDB(t, p.DBPath(name), "")
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"); err != nil {
		t.Fatal(err)
	}
	closeDB(t, db)
	waitConverged(t, ConvergeTimeout, p, others(nodes, p), name)
}

// others returns nodes without n.
func others(nodes []*Node, n *Node) []*Node {
	var out []*Node
	for _, o := range nodes {
		if o != n {
			out = append(out, o)
		}
	}
	return out
}

func TestConsul_ElectsOnePrimaryAndReplicates(t *testing.T) {
	agent := StartConsul(t)
	nodes := startConsulCluster(t, agent, 3)
	createTable(t, nodes[0], nodes, "app.db")
	for _, n := range nodes[1:] {
		if err := insertOnce(n, "app.db", 99, 2*time.Second); err == nil {
			t.Fatalf("replica %s accepted a write without the HALT lock", n.Name)
		}
	}
	if err := insertOnce(nodes[0], "app.db", 1, 5*time.Second); err != nil {
		t.Fatalf("primary refused a write: %v", err)
	}
	waitConverged(t, ConvergeTimeout, nodes[0], nodes[1:], "app.db")
}

func TestConsul_SIGTERMHandsOffWithoutLoss(t *testing.T) {
	agent := StartConsul(t)
	nodes := startConsulCluster(t, agent, 3)
	old := nodes[0]
	createTable(t, old, nodes, "app.db")
	w := startWriter(t, "app.db", nodes)
	w.waitAcks(t, 50, 10*time.Second)

	if err := old.Stop(); err != nil {
		t.Fatalf("stop %s: %v", old.Name, err)
	}
	rest := others(nodes, old)
	w.waitAcks(t, 50, 10*time.Second)
	w.close()

	gap, to := switchGap(w.snapshot())
	t.Logf("handoff: writes moved from %s to %s; longest write gap %s", old.Name, to.Name, gap)
	if gap > handoffGapTarget {
		t.Errorf("write gap at the handoff %s, target < %s", gap, handoffGapTarget)
	}
	p := waitNewPrimary(t, rest, 5*time.Second)
	waitConverged(t, ConvergeTimeout, p, others(rest, p), "app.db")
	for _, n := range rest {
		requireRows(t, n, "app.db", w.acked())
	}
	if !strings.Contains(old.Log(), "handed the primary role off") {
		t.Errorf("%s did not log a handoff at SIGTERM", old.Name)
	}
}

func TestConsul_SIGKILLFailsOverAndTheKilledNodeRejoins(t *testing.T) {
	agent := StartConsul(t)
	nodes := startConsulCluster(t, agent, 3)
	old := nodes[0]
	createTable(t, old, nodes, "app.db")
	if err := insertOnce(old, "app.db", 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ConvergeTimeout, old, nodes[1:], "app.db")

	killed := time.Now()
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	rest := others(nodes, old)
	var took time.Duration
	for id := int64(2); ; id++ {
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("no node accepted a write within 30s of the primary's SIGKILL")
		}
		if insertOnce(rest[0], "app.db", id, time.Second) == nil || insertOnce(rest[1], "app.db", id, time.Second) == nil {
			took = time.Since(killed)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("crash failover: writable again %s after SIGKILL (target %s)", took.Round(time.Millisecond), crashFailoverTarget)
	if took > crashFailoverTarget {
		t.Errorf("crash failover took %s, target %s", took, crashFailoverTarget)
	}
	p := waitNewPrimary(t, rest, time.Second)

	old.Restart(t)
	waitRole(t, old, "replica", 20*time.Second)
	if err := insertOnce(p, "app.db", 1000, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, ConvergeTimeout, p, others(nodes, p), "app.db")
}

func TestConsul_PromoteEndpoint(t *testing.T) {
	agent := StartConsul(t)
	nodes := startConsulCluster(t, agent, 2)
	createTable(t, nodes[0], nodes, "app.db")
	code, body := apiRequest(t, nodes[1], http.MethodPost, "/promote", nil, nil)
	if code != http.StatusOK {
		t.Fatalf("POST /promote on %s: %d %s", nodes[1].Name, code, body)
	}
	waitRole(t, nodes[1], "primary", time.Second)
	waitRole(t, nodes[0], "replica", 10*time.Second)
	if err := insertOnce(nodes[1], "app.db", 1, 5*time.Second); err != nil {
		t.Fatalf("promoted node refused a write: %v", err)
	}
	waitConverged(t, ConvergeTimeout, nodes[1], nodes[:1], "app.db")
}

func TestConsul_ExitOnErrorEndsTheDaemonWhenConsulStaysUnreachable(t *testing.T) {
	agent := StartConsul(t)
	agent.Stop(t)
	n := consulNode(t, agent, "lonely", true, NodeOptions{ExitOnError: true})
	code, err := n.WaitExit(30 * time.Second)
	if err != nil {
		t.Fatalf("the daemon kept running with Consul unreachable and exit-on-error true: %v", err)
	}
	if code == 0 {
		t.Fatalf("exit code 0 after giving up on Consul, want non-zero")
	}
	if !strings.Contains(n.Log(), "exit-on-error is true") {
		t.Fatalf("the daemon did not say why it exited:\n%s", n.Log())
	}
}
