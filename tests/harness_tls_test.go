package tests

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/tlstest"
)

// HTTPClient returns a client for n's API: http.DefaultClient, or with
// NodeOptions.TLS one that trusts the node's CA and presents its
// certificate.
func (n *Node) HTTPClient() *http.Client {
	f := n.opts.TLS
	if f == nil {
		return http.DefaultClient
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if pem, err := os.ReadFile(f.CA); err == nil {
		conf.RootCAs = x509.NewCertPool()
		conf.RootCAs.AppendCertsFromPEM(pem)
	}
	if cert, err := tls.LoadX509KeyPair(f.Cert, f.Key); err == nil {
		conf.Certificates = []tls.Certificate{cert}
	}
	// No keep-alive: callers poll with a new client each time.
	return &http.Client{Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
}

// TLSEnv returns the LITEFS_TLS_* environment of a CLI talking to n.
func (n *Node) TLSEnv() []string {
	f := n.opts.TLS
	if f == nil {
		return nil
	}
	return []string{"LITEFS_TLS_CA=" + f.CA, "LITEFS_TLS_CERT=" + f.Cert, "LITEFS_TLS_KEY=" + f.Key}
}

// tlsFiles writes ca's certificate and a new certificate for node name
// into a fresh directory.
func tlsFiles(t *testing.T, ca *tlstest.CA, name string) *tlstest.Files {
	t.Helper()
	f := ca.WriteFiles(t, t.TempDir(), name)
	return &f
}

// runCLI runs the litefs binary with extra environment entries, bounded by
// limit, and returns its exit code (-1 on timeout) and output.
func runCLI(t *testing.T, limit time.Duration, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(daemonPath(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return cmd.ProcessState.ExitCode(), out.String()
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-done
		return -1, out.String()
	}
}

// waitLogLine waits up to limit for want in n's log.
func waitLogLine(t *testing.T, n *Node, want string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(n.Log(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%s's log lacks %q within %s:\n%s", n.Name, want, limit, n.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
