package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/tlstest"
	litefsgo "github.com/superfly/litefs-go"
)

// End-to-end tests of http.tls (SPEC section 11, docs/tls.md): nodes with
// certificates from a CA made at run time replicate, forward HALT writes
// and hand off the primary role over mutual TLS; a peer from another CA is
// refused with a clear log line.

// TestTLS_ReplicatesAndForwardsHaltWritesOverMutualTLS runs a static
// primary and replica with http.tls (cert, key, ca): the replica follows
// the primary over https, takes the HALT lock and writes, and the row
// appears on the primary; the CLI reaches the daemon with LITEFS_TLS_*.
func TestTLS_ReplicatesAndForwardsHaltWritesOverMutualTLS(t *testing.T) {
	RequireFUSE(t)
	ca := tlstest.NewCA(t, "cluster")
	p := StartNode(t, NodeOptions{Name: "p", TLS: tlsFiles(t, ca, "p")})
	r := StartNode(t, NodeOptions{Name: "r", Primary: p, TLS: tlsFiles(t, ca, "r")})
	if !strings.HasPrefix(p.URL(), "https://") {
		t.Fatalf("primary URL %s, want https", p.URL())
	}
	name := "tls.db"
	pdb := OpenDB(t, p.DBPath(name), "")
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('from primary')")
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, name)

	rdb := OpenDB(t, r.DBPath(name), "")
	f, err := os.OpenFile(r.DBPath(name)+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := litefsgo.Halt(f); err != nil {
		t.Fatalf("Halt over TLS: %v\n%s", err, r.Log())
	}
	mustExec(t, rdb, "INSERT INTO t(v) VALUES ('from replica')")
	if err := litefsgo.Unhalt(f); err != nil {
		t.Fatalf("Unhalt: %v", err)
	}
	if got := queryString(t, pdb, "SELECT group_concat(v, ',') FROM t"); got != "from primary,from replica" {
		t.Fatalf("primary rows %q, want the replica's HALT write too", got)
	}
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, name)

	code, out := runCLI(t, 30*time.Second, r.TLSEnv(), "status", "-url", r.URL())
	if code != 0 || !strings.Contains(out, "replica") {
		t.Errorf("litefs status over TLS: exit %d\n%s", code, out)
	}
	for _, c := range []struct {
		name string
		env  []string
		want string
	}{
		{"no CA", nil, "set LITEFS_TLS_CA to the CA file"},
		{"no client certificate", r.TLSEnv()[:1], "it requires a client certificate; set LITEFS_TLS_CERT and LITEFS_TLS_KEY"},
		{"plain HTTP URL", r.TLSEnv(), "Client sent an HTTP request to an HTTPS server"},
	} {
		u := r.URL()
		if c.name == "plain HTTP URL" {
			u = "http://" + r.Addr
		}
		if code, out := runCLI(t, 30*time.Second, c.env, "status", "-url", u); code == 0 || !strings.Contains(out, c.want) {
			t.Errorf("litefs status, %s: exit %d, want a failure saying %q:\n%s", c.name, code, c.want, out)
		}
	}
}

// TestTLS_RefusesPeersOfAnotherCA starts a primary with mutual TLS and
// replicas whose certificates or trust come from another CA: none
// replicates, and the log of the side that refused says why.
func TestTLS_RefusesPeersOfAnotherCA(t *testing.T) {
	RequireFUSE(t)
	ca := tlstest.NewCA(t, "cluster")
	other := tlstest.NewCA(t, "other")
	p := StartNode(t, NodeOptions{Name: "p", TLS: tlsFiles(t, ca, "p")})
	pdb := OpenDB(t, p.DBPath("app.db"), "")
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY)")

	// A replica whose certificate another CA signed, trusting both CAs
	// (say, halfway through a CA rotation): the primary refuses it.
	stranger := tlsFiles(t, other, "stranger")
	bundle := stranger.CA + ".bundle"
	if err := os.WriteFile(bundle, append(append([]byte{}, other.CertPEM...), ca.CertPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	stranger.CA = bundle
	s := StartNode(t, NodeOptions{Name: "stranger", Primary: p, TLS: stranger})
	waitLogLine(t, p, `msg="TLS: refused a connection: the peer's certificate is not signed by http.tls.ca"`, 15*time.Second)
	waitLogLine(t, s, "the primary refused this node's TLS handshake", 15*time.Second)

	// A replica trusting only the other CA: it refuses the primary.
	lost := StartNode(t, NodeOptions{Name: "lost", Primary: p, TLS: tlsFiles(t, other, "lost")})
	waitLogLine(t, lost, "the TLS certificate of the primary does not verify against http.tls.ca", 15*time.Second)

	for _, n := range []*Node{s, lost} {
		if _, err := os.Stat(n.DBPath("app.db")); err == nil {
			t.Errorf("%s has app.db: it replicated from a primary of another CA", n.Name)
		}
	}
}

// TestTLS_HandoffOverMutualTLS runs a Consul cluster of two candidates with
// mutual TLS and moves the primary with `litefs run -promote` (over https,
// with LITEFS_TLS_*): the handoff request and the stream carrying it use
// TLS, and the new primary takes writes that reach the old one.
func TestTLS_HandoffOverMutualTLS(t *testing.T) {
	agent := StartConsul(t)
	ca := tlstest.NewCA(t, "cluster")
	n1 := consulNode(t, agent, "n1", true, NodeOptions{TLS: tlsFiles(t, ca, "n1")})
	waitRole(t, n1, "primary", 15*time.Second)
	n2 := consulNode(t, agent, "n2", true, NodeOptions{TLS: tlsFiles(t, ca, "n2")})
	waitRole(t, n2, "replica", 15*time.Second)
	nodes := []*Node{n1, n2}
	createTable(t, n1, nodes, "app.db")

	code, out := runCLI(t, 60*time.Second, n2.TLSEnv(), "run", "-url", n2.URL(), "-promote", "--", "sh", "-c", "echo ran")
	if code != 0 || !strings.Contains(out, "ran") {
		t.Fatalf("litefs run -promote over TLS: exit %d\n%s\n%s", code, out, n2.Log())
	}
	waitRole(t, n2, "primary", 5*time.Second)
	waitRole(t, n1, "replica", 15*time.Second)
	if err := insertOnce(n2, "app.db", 1, 5*time.Second); err != nil {
		t.Fatalf("the promoted node refused a write: %v", err)
	}
	waitConverged(t, ConvergeTimeout, n2, []*Node{n1}, "app.db")
}

// TestTLS_WithoutCAVerifiesPeersAgainstTheSystemRoots runs nodes with
// http.tls cert and key but no ca: HTTPS without client certificates,
// peers verified against the system roots (here SSL_CERT_FILE, which Go
// reads as the system roots on Linux). A replica whose system roots lack
// the CA refuses the primary and says so.
func TestTLS_WithoutCAVerifiesPeersAgainstTheSystemRoots(t *testing.T) {
	RequireFUSE(t)
	ca := tlstest.NewCA(t, "public")
	// noCA returns a node's cert and key without ca, and its environment
	// with roots as the system roots.
	noCA := func(name, roots string) (*tlstest.Files, []string) {
		f := tlsFiles(t, ca, name)
		if roots == "" {
			roots = f.CA
		}
		f.CA = ""
		return f, []string{"SSL_CERT_FILE=" + roots, "SSL_CERT_DIR=" + t.TempDir()}
	}
	pf, penv := noCA("p", "")
	p := StartNode(t, NodeOptions{Name: "p", TLS: pf, Env: penv})
	rf, renv := noCA("r", "")
	r := StartNode(t, NodeOptions{Name: "r", Primary: p, TLS: rf, Env: renv})
	pdb := OpenDB(t, p.DBPath("app.db"), "")
	mustExec(t, pdb, "CREATE TABLE t(id INTEGER PRIMARY KEY)")
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "app.db")

	empty := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	lf, lenv := noCA("lost", empty)
	lost := StartNode(t, NodeOptions{Name: "lost", Primary: p, TLS: lf, Env: lenv})
	waitLogLine(t, lost, "the TLS certificate of the primary does not verify against http.tls.ca (or the system roots without one)", 15*time.Second)
}
