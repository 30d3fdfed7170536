package http

import (
	"net"
	"strings"
)

// OpenAPIWarning returns the warning a node without an auth token gives
// when its API listens on addr beyond loopback (SPEC 11), or "" when there
// is nothing to warn about. Mutual TLS (http.tls.ca) authenticates every
// client too, so it needs no warning. It appears in the start-up log, in
// GET /info and in "litefs status".
func OpenAPIWarning(addr, token string, mutualTLS bool) string {
	if token != "" || mutualTLS || isLoopbackAddr(addr) {
		return ""
	}
	return "no auth token is set (http.auth-token, http.auth-token-file or LITEFS_AUTH_TOKEN) and the API listens on " +
		addr + ", beyond loopback: anyone who can reach this port can read every database and, posing as a replica, write through the HALT lock"
}

// isLoopbackAddr reports whether the listen address addr (host:port) only
// accepts connections from this machine. An empty host (":20202") listens
// on every interface; a host name counts as loopback only as "localhost".
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
