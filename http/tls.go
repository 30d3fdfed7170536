package http

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	nethttp "net/http"
	"os"
	"strings"
	"time"
)

// TLSFiles names the PEM files of http.tls (docs/tls.md).
type TLSFiles struct {
	Cert string // this node's certificate chain (http.tls.cert)
	Key  string // the private key of Cert (http.tls.key)
	CA   string // the CA certificates peers are verified against (http.tls.ca)
	// Env names the files in errors by the CLI's environment variables
	// (LITEFS_TLS_CERT, ...) instead of the config keys.
	Env bool
}

// name returns how errors call the setting of kind "cert", "key" or "ca".
func (f TLSFiles) name(kind string) string {
	if f.Env {
		return "LITEFS_TLS_" + strings.ToUpper(kind)
	}
	return "http.tls." + kind
}

// TLS is a node's loaded http.tls: how it serves and how it dials peers.
// It is built once, at start, by LoadTLS and handed to the server and to
// every node-to-node client.
type TLS struct {
	// Server is the listener's configuration: nil when no certificate is
	// set. With a CA it requires and verifies client certificates.
	Server *tls.Config
	// Client is used for every request to a peer: it verifies the peer
	// against the CA (the system roots without one) and presents this
	// node's certificate when the peer asks for one.
	Client *tls.Config
}

// LoadTLS reads and checks the files of f. Cert and Key go together; CA may
// be set with them (mutual TLS) or alone (a client that verifies the
// server, such as the litefs CLI). Every error names the config key and the
// file. With nothing set it returns nil, nil.
func LoadTLS(f TLSFiles) (*TLS, error) {
	if f.Cert == "" && f.Key == "" && f.CA == "" {
		return nil, nil
	}
	if (f.Cert == "") != (f.Key == "") {
		return nil, fmt.Errorf("%s and %s must be set together", f.name("cert"), f.name("key"))
	}
	client := &tls.Config{MinVersion: tls.VersionTLS12}
	var server *tls.Config
	var pool *x509.CertPool
	if f.CA != "" {
		var err error
		if pool, err = loadCAPool(f.CA, f.name("ca")); err != nil {
			return nil, err
		}
		client.RootCAs = pool
	}
	if f.Cert != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("%s %s / %s %s: %w", f.name("cert"), f.Cert, f.name("key"), f.Key, err)
		}
		if err := checkLeaf(cert, f, pool); err != nil {
			return nil, err
		}
		// Present the certificate whatever CAs the server names: a peer
		// with another CA then logs why it refused this node.
		client.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		server = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		if pool != nil {
			server.ClientCAs = pool
			server.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return &TLS{Server: server, Client: client}, nil
}

// loadCAPool reads the CA file into a pool.
func loadCAPool(path, key string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in the file", key, path)
	}
	return pool, nil
}

// checkLeaf refuses an expired certificate, and one that the CA (if set)
// did not sign: peers verifying against the same CA would refuse it.
func checkLeaf(cert tls.Certificate, f TLSFiles, pool *x509.CertPool) error {
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("%s %s: %w", f.name("cert"), f.Cert, err)
		}
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		return fmt.Errorf("%s %s expired at %s", f.name("cert"), f.Cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if pool == nil {
		return nil
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return fmt.Errorf("%s %s does not verify against %s %s (peers would refuse it): %w", f.name("cert"), f.Cert, f.name("ca"), f.CA, err)
	}
	return nil
}

// NewPeerTransport returns a transport for requests to other nodes with
// bounded connect and handshake waits, speaking TLS with tlsConf (nil: the
// system roots, for https:// URLs). responseHeader bounds the wait for a
// response's headers; 0 means no limit.
func NewPeerTransport(tlsConf *tls.Config, responseHeader time.Duration) *nethttp.Transport {
	if tlsConf != nil {
		tlsConf = tlsConf.Clone()
	}
	return &nethttp.Transport{
		Proxy:                 nethttp.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: responseHeader,
		IdleConnTimeout:       time.Minute,
		MaxIdleConnsPerHost:   8,
	}
}

// NewPeerClient returns a client for the HALT, transaction and handoff
// requests to the primary, speaking TLS with tlsConf (see NewPeerTransport).
func NewPeerClient(tlsConf *tls.Config) *nethttp.Client {
	return &nethttp.Client{Transport: NewPeerTransport(tlsConf, 0)}
}

// explainTLSError adds what a TLS failure talking to peer means in litefs
// terms; other errors are returned unchanged.
func explainTLSError(err error, peer string) error {
	var verr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var oerr *net.OpError
	var rerr tls.RecordHeaderError
	switch {
	case errors.As(err, &herr):
		return fmt.Errorf("the TLS certificate of %s does not name the host of its URL: %w", peer, err)
	case errors.As(err, &uerr), errors.As(err, &verr):
		return fmt.Errorf("the TLS certificate of %s does not verify against http.tls.ca (or the system roots without one): %w", peer, err)
	case errors.As(err, &oerr) && oerr.Op == "remote error":
		return fmt.Errorf("%s refused this node's TLS handshake (does it require a client certificate signed by its http.tls.ca?): %w", peer, err)
	case errors.As(err, &rerr):
		return fmt.Errorf("%s does not speak TLS (is its URL http://, without http.tls?): %w", peer, err)
	}
	return err
}
