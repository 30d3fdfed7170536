package http

import (
	"log"
	"log/slog"
	"strings"
)

// newServerErrorLog returns the net/http server's error log: a TLS
// handshake that failed becomes one warning naming the peer and why it was
// refused; everything else is logged at debug level.
func newServerErrorLog(l *slog.Logger) *log.Logger {
	return log.New(serverLogWriter{log: l}, "", 0)
}

// serverLogWriter turns the lines of net/http's error log into slog records.
type serverLogWriter struct{ log *slog.Logger }

// Write implements io.Writer for one log line.
func (w serverLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	rest, ok := strings.CutPrefix(line, "http: TLS handshake error from ")
	if !ok {
		w.log.Debug("http server: " + line)
		return len(p), nil
	}
	remote, reason, _ := strings.Cut(rest, ": ")
	if hint := handshakeHint(reason); hint != "" {
		w.log.Warn("TLS: refused a connection: "+hint, "remote", remote, "reason", reason)
	} else {
		// A closed connection or a port probe: not worth a warning.
		w.log.Debug("TLS handshake failed", "remote", remote, "reason", reason)
	}
	return len(p), nil
}

// handshakeHint explains a server-side handshake failure, or returns ""
// for the ones not worth a warning (the client hung up).
func handshakeHint(reason string) string {
	switch {
	case strings.Contains(reason, "signed by unknown authority"),
		strings.Contains(reason, "failed to verify certificate"):
		return "the peer's certificate is not signed by http.tls.ca"
	case strings.Contains(reason, "didn't provide a certificate"):
		return "the peer presented no certificate; with http.tls.ca set every peer and client must present one signed by it"
	case strings.Contains(reason, "remote error"):
		return "the peer refused this node's certificate (is it signed by the peer's http.tls.ca?)"
	case strings.Contains(reason, "client sent an HTTP request to an HTTPS server"),
		strings.Contains(reason, "first record does not look like a TLS handshake"):
		return "the peer speaks plain HTTP to this HTTPS address (its URL for this node must be https://)"
	case strings.HasSuffix(reason, "EOF"), strings.Contains(reason, "connection reset"):
		return ""
	}
	return "TLS handshake failed"
}
