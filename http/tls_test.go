package http

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/tlstest"
)

// TestLoadTLS_RefusesBadFiles proves that every unusable http.tls is refused
// at load with an error naming the setting and the file.
func TestLoadTLS_RefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "good")
	node := ca.WriteFiles(t, dir, "node")
	other := tlstest.NewCA(t, "other").WriteFiles(t, dir, "stranger")
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notPEM := write("garbage.pem", "not a certificate\n")
	certPEM, keyPEM := ca.Issue(t, "old", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	expired := TLSFiles{Cert: write("old.pem", string(certPEM)), Key: write("old-key.pem", string(keyPEM))}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name  string
		files TLSFiles
		want  []string
	}{
		{"cert without key", TLSFiles{Cert: node.Cert}, []string{"http.tls.cert and http.tls.key must be set together"}},
		{"missing cert file", TLSFiles{Cert: missing, Key: node.Key}, []string{"http.tls.cert " + missing, "no such file"}},
		{"key of another certificate", TLSFiles{Cert: node.Cert, Key: other.Key}, []string{"http.tls.key " + other.Key, "private key does not match"}},
		{"cert file not PEM", TLSFiles{Cert: notPEM, Key: node.Key}, []string{"http.tls.cert " + notPEM}},
		{"missing ca file", TLSFiles{Cert: node.Cert, Key: node.Key, CA: missing}, []string{"http.tls.ca", missing}},
		{"ca file not PEM", TLSFiles{Cert: node.Cert, Key: node.Key, CA: notPEM}, []string{"http.tls.ca " + notPEM + ": no PEM certificate"}},
		{"cert from another CA", TLSFiles{Cert: other.Cert, Key: other.Key, CA: node.CA}, []string{"http.tls.cert " + other.Cert + " does not verify against http.tls.ca " + node.CA}},
		{"expired cert", expired, []string{"http.tls.cert " + expired.Cert + " expired at"}},
		{"CLI names its variables", TLSFiles{Cert: missing, Key: node.Key, Env: true}, []string{"LITEFS_TLS_CERT " + missing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadTLS(tt.files)
			if err == nil {
				t.Fatalf("LoadTLS = %+v, want an error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("LoadTLS error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestLoadTLS_Shapes proves what each valid combination turns on.
func TestLoadTLS_Shapes(t *testing.T) {
	dir := t.TempDir()
	f := tlstest.NewCA(t, "good").WriteFiles(t, dir, "node")
	if got, err := LoadTLS(TLSFiles{}); got != nil || err != nil {
		t.Fatalf("LoadTLS(none) = %v, %v; want nil, nil", got, err)
	}
	both, err := LoadTLS(TLSFiles{Cert: f.Cert, Key: f.Key})
	if err != nil || both.Server == nil || both.Server.ClientCAs != nil || both.Client.RootCAs != nil {
		t.Fatalf("cert+key: %+v, %v; want HTTPS without client certificates, system roots", both, err)
	}
	mtls, err := LoadTLS(TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA})
	if err != nil || mtls.Server.ClientCAs == nil || mtls.Server.ClientAuth.String() != "RequireAndVerifyClientCert" || mtls.Client.GetClientCertificate == nil {
		t.Fatalf("cert+key+ca: %+v, %v; want mutual TLS", mtls, err)
	}
	caOnly, err := LoadTLS(TLSFiles{CA: f.CA, Env: true})
	if err != nil || caOnly.Server != nil || caOnly.Client.RootCAs == nil {
		t.Fatalf("ca alone (CLI): %+v, %v; want a client verifying against the CA", caOnly, err)
	}
}

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startTLSServer serves a store over mutual TLS with files f on 127.0.0.1
// and returns its https URL and its log.
func startTLSServer(t *testing.T, f tlstest.Files) (string, *syncBuffer) {
	t.Helper()
	conf, err := LoadTLS(TLSFiles{Cert: f.Cert, Key: f.Key, CA: f.CA})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv := NewServer(openStore(t), ServerOptions{
		Addr: "127.0.0.1:0", TLSConfig: conf.Server, TempDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return "https://" + srv.Addr().String(), logs
}

// TestTLS_MutualTLSRefusesStrangers proves that a server with http.tls.ca
// serves a client whose certificate its CA signed, refuses one signed by
// another CA or presenting none (logging one clear warning for each), and
// that the refused client gets an error saying why.
func TestTLS_MutualTLSRefusesStrangers(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "good")
	srvFiles := ca.WriteFiles(t, dir, "server")
	peerFiles := ca.WriteFiles(t, dir, "peer")
	strangerFiles := tlstest.NewCA(t, "other").WriteFiles(t, dir, "stranger")
	url, logs := startTLSServer(t, srvFiles)

	client := func(f TLSFiles) *nethttp.Client {
		conf, err := LoadTLS(f)
		if err != nil {
			t.Fatal(err)
		}
		return NewPeerClient(conf.Client)
	}
	get := func(c *nethttp.Client) error {
		resp, err := c.Get(url + "/info")
		if err != nil {
			return explainTLSError(err, "the primary")
		}
		resp.Body.Close()
		if resp.StatusCode != nethttp.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}

	if err := get(client(TLSFiles{Cert: peerFiles.Cert, Key: peerFiles.Key, CA: peerFiles.CA})); err != nil {
		t.Fatalf("peer with a certificate from the CA: %v", err)
	}
	// Signed by another CA, trusting the server's CA.
	trusting, err := LoadTLS(TLSFiles{CA: peerFiles.CA, Env: true})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := LoadTLS(TLSFiles{Cert: strangerFiles.Cert, Key: strangerFiles.Key})
	if err != nil {
		t.Fatal(err)
	}
	stranger.Client.RootCAs = trusting.Client.RootCAs
	err = get(NewPeerClient(stranger.Client))
	if err == nil || !strings.Contains(err.Error(), "refused this node's TLS handshake") {
		t.Errorf("stranger's request: %v; want a refusal explained", err)
	}
	waitLog(t, logs, `TLS: refused a connection: the peer's certificate is not signed by http.tls.ca`)
	// No certificate at all.
	if err := get(client(TLSFiles{CA: peerFiles.CA, Env: true})); err == nil {
		t.Errorf("request without a client certificate succeeded")
	}
	waitLog(t, logs, `TLS: refused a connection: the peer presented no certificate`)
	// The server's certificate does not verify against the client's CA.
	err = get(client(TLSFiles{Cert: strangerFiles.Cert, Key: strangerFiles.Key, CA: strangerFiles.CA}))
	if err == nil || !strings.Contains(err.Error(), "the TLS certificate of the primary does not verify against http.tls.ca") {
		t.Errorf("request trusting another CA: %v; want the server's certificate refused", err)
	}
}

// waitLog waits up to 5s for want to appear in logs.
func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", want, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerErrorLog_ExplainsHandshakeRefusals proves that each kind of
// failed handshake net/http reports becomes one line saying why, and that
// abandoned handshakes (port probes) stay out of the warnings.
func TestServerErrorLog_ExplainsHandshakeRefusals(t *testing.T) {
	tests := []struct {
		name, line, want string
	}{
		{"other CA", "http: TLS handshake error from 10.0.0.7:5: tls: failed to verify certificate: x509: certificate signed by unknown authority",
			`level=WARN msg="TLS: refused a connection: the peer's certificate is not signed by http.tls.ca" remote=10.0.0.7:5`},
		{"no certificate", "http: TLS handshake error from 10.0.0.7:5: tls: client didn't provide a certificate",
			`level=WARN msg="TLS: refused a connection: the peer presented no certificate`},
		{"plain HTTP", "http: TLS handshake error from 10.0.0.7:5: client sent an HTTP request to an HTTPS server",
			`level=WARN msg="TLS: refused a connection: the peer speaks plain HTTP to this HTTPS address`},
		{"peer refused ours", "http: TLS handshake error from 10.0.0.7:5: remote error: tls: bad certificate",
			`level=WARN msg="TLS: refused a connection: the peer refused this node's certificate`},
		{"probe", "http: TLS handshake error from 10.0.0.7:5: EOF", `level=DEBUG msg="TLS handshake failed" remote=10.0.0.7:5 reason=EOF`},
		{"other server errors", "http: superfluous response.WriteHeader call", `level=DEBUG msg="http server: http: superfluous`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf syncBuffer
			l := newServerErrorLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
			l.Print(tt.line)
			if got := buf.String(); !strings.Contains(got, tt.want) || strings.Count(got, "\n") != 1 {
				t.Errorf("logged %q, want one line containing %q", got, tt.want)
			}
		})
	}
}
