package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestProxy_ConsulFailoverMovesWrites runs three Consul candidates behind
// their proxies: writes on a replica reach the primary; when the primary
// dies a write gets a prompt 503 until a new primary is elected, then
// writes on the remaining replica reach the new primary and reads with the
// cookie see them.
func TestProxy_ConsulFailoverMovesWrites(t *testing.T) {
	agent := StartConsul(t)
	lease := func() *ConsulLease { return &ConsulLease{URL: agent.URL, Candidate: true, LockDelay: "1s"} }
	n1 := startProxyNode(t, "n1", NodeOptions{Consul: lease()}, "  primary-redirect-timeout: 1s\n")
	waitRole(t, n1.Node, "primary", 15*time.Second)
	createItemTables(t, n1)
	nodes := []*proxyNode{n1}
	for _, name := range []string{"n2", "n3"} {
		n := startProxyNode(t, name, NodeOptions{Consul: lease()}, "  primary-redirect-timeout: 1s\n")
		waitRole(t, n.Node, "replica", 15*time.Second)
		n.App.open(t, n.Node)
		nodes = append(nodes, n)
	}
	client := newJarClient(t)
	writeAndRead := func(via, reader *proxyNode, want string) {
		t.Helper()
		val := fmt.Sprintf("via-%s-%d", via.Name, time.Now().UnixNano())
		code, body, _ := do(t, client, "POST", via.ProxyURL()+"/items/app.db", val)
		if code != http.StatusCreated || !strings.HasSuffix(body, " node="+want) {
			t.Fatalf("POST on %s: %d %q, want 201 from %s", via.Name, code, body, want)
		}
		var id int
		fmt.Sscanf(body, "id=%d", &id)
		code, got, _ := do(t, client, "GET", fmt.Sprintf("%s/items/app.db/%d", reader.ProxyURL(), id), "")
		if code != http.StatusOK || got != val+" node="+reader.Name {
			t.Fatalf("GET on %s after the write: %d %q", reader.Name, code, got)
		}
	}
	writeAndRead(nodes[1], nodes[2], "n1")

	if err := n1.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	code, body, _ := do(t, client, "POST", nodes[1].ProxyURL()+"/items/app.db", "during")
	if code != http.StatusServiceUnavailable || time.Since(start) > 5*time.Second {
		t.Errorf("POST while the primary is dead: %d %q after %s, want a prompt 503", code, body, time.Since(start))
	}
	newP := waitNewPrimary(t, []*Node{nodes[1].Node, nodes[2].Node}, 60*time.Second)
	other := nodes[1]
	if other.Node == newP {
		other = nodes[2]
	}
	waitRole(t, other.Node, "replica", 30*time.Second)
	writeAndRead(other, other, newP.Name)
	t.Logf("new primary %s elected %s after the kill", newP.Name, time.Since(start).Round(time.Millisecond))
}
