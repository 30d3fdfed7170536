package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/consultest"
	"gopkg.in/yaml.v3"
)

// DefaultConsulKey is the lease.consul.key written when ConsulLease.Key is
// empty.
const DefaultConsulKey = "litefs/primary"

// ConsulLease configures a node's `lease: type: consul` section
// (NodeOptions.Consul). With Consul each node's lease names the node
// itself: hostname is the node's Name and advertise-url its own URL.
type ConsulLease struct {
	URL       string // the agent's URL (consultest.Agent.URL)
	Key       string // lease.consul.key; default DefaultConsulKey
	Candidate bool   // lease.candidate
	Promote   bool   // lease.promote
	TTL       string // lease.consul.ttl, e.g. "10s"; omitted when ""
	LockDelay string // lease.consul.lock-delay, e.g. "1s"; omitted when ""
}

// yaml renders the lease section of node n.
func (c *ConsulLease) yaml(n *Node) string {
	key := c.Key
	if key == "" {
		key = DefaultConsulKey
	}
	var b strings.Builder
	b.WriteString("lease:\n  type: consul\n")
	fmt.Fprintf(&b, "  hostname: %q\n  advertise-url: %q\n", n.Name, n.URL())
	fmt.Fprintf(&b, "  candidate: %t\n  promote: %t\n", c.Candidate, c.Promote)
	fmt.Fprintf(&b, "  consul:\n    url: %q\n    key: %q\n", c.URL, key)
	if c.TTL != "" {
		fmt.Fprintf(&b, "    ttl: %q\n", c.TTL)
	}
	if c.LockDelay != "" {
		fmt.Fprintf(&b, "    lock-delay: %q\n", c.LockDelay)
	}
	return b.String()
}

// StartConsul starts a real Consul dev agent for the test (stopped at its
// end). A missing consul binary fails the test, it never skips: run
// scripts/build-consul.sh or set LITEFS_CONSUL.
func StartConsul(t testing.TB) *consultest.Agent {
	t.Helper()
	return consultest.Start(t)
}

// TestConsulLeaseYAML checks the lease section NodeOptions.Consul generates
// (no daemon, no FUSE, no agent needed).
func TestConsulLeaseYAML(t *testing.T) {
	type lease struct {
		Type         string `yaml:"type"`
		Hostname     string `yaml:"hostname"`
		AdvertiseURL string `yaml:"advertise-url"`
		Candidate    bool   `yaml:"candidate"`
		Promote      bool   `yaml:"promote"`
		Consul       struct {
			URL       string        `yaml:"url"`
			Key       string        `yaml:"key"`
			TTL       time.Duration `yaml:"ttl"`
			LockDelay time.Duration `yaml:"lock-delay"`
		} `yaml:"consul"`
	}
	parse := func(opts NodeOptions) lease {
		t.Helper()
		n := &Node{Name: "n1", Addr: "127.0.0.1:1234", DataDir: "/d", MountDir: "/m", opts: opts}
		var cfg struct {
			Lease lease `yaml:"lease"`
		}
		if err := yaml.Unmarshal([]byte(n.configYAML()), &cfg); err != nil {
			t.Fatalf("parse %q: %v", n.configYAML(), err)
		}
		return cfg.Lease
	}

	primary := &Node{Name: "p", Addr: "127.0.0.1:1"}
	got := parse(NodeOptions{Primary: primary, Consul: &ConsulLease{URL: "http://127.0.0.1:8500", Candidate: true, TTL: "10s", LockDelay: "1s"}})
	if got.Type != "consul" || got.Hostname != "n1" || got.AdvertiseURL != "http://127.0.0.1:1234" ||
		!got.Candidate || got.Promote || got.Consul.URL != "http://127.0.0.1:8500" ||
		got.Consul.Key != DefaultConsulKey || got.Consul.TTL != 10*time.Second || got.Consul.LockDelay != time.Second {
		t.Fatalf("lease = %+v", got)
	}

	got = parse(NodeOptions{Consul: &ConsulLease{URL: "http://x", Key: "k", Promote: true}})
	if got.Consul.Key != "k" || !got.Promote || got.Candidate || got.Consul.TTL != 0 || got.Consul.LockDelay != 0 {
		t.Fatalf("lease = %+v", got)
	}

	got = parse(NodeOptions{Lease: "lease:\n  type: static\n", Consul: &ConsulLease{URL: "http://x"}})
	if got.Type != "static" {
		t.Fatalf("Lease did not override Consul: %+v", got)
	}
}
