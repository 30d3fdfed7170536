// Package consul implements litefs.Leaser with a Consul session lock
// (github.com/hashicorp/consul/api).
//
// Candidates race for a session lock on one KV key; the value names the
// holder (hostname, advertise URL, cluster id, database positions). The
// session is bound to a short TTL health check that the holder passes every
// RenewInterval, so a holder that dies loses the lock within about CheckTTL
// instead of Consul's session TTL (10 s at least, up to twice that). See
// docs/consul.md for the design and the trade-offs.
package consul

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults and limits of Config.
const (
	// DefaultTTL is the session TTL: the backstop when the health check
	// cannot invalidate the session (lease.consul.ttl).
	DefaultTTL = 10 * time.Second
	// DefaultLockDelay is how long Consul refuses the key to every session
	// after the holder's session was invalidated (lease.consul.lock-delay).
	DefaultLockDelay = time.Second
	// DefaultCheckTTL is the TTL of the health check the session is bound to.
	DefaultCheckTTL = 2 * time.Second

	// MinTTL and MaxTTL are the session TTLs Consul accepts.
	MinTTL = 10 * time.Second
	MaxTTL = 24 * time.Hour
	// MaxLockDelay is the longest lock-delay Consul applies.
	MaxLockDelay = 60 * time.Second
	// MinCheckTTL is the shortest health-check TTL accepted: below it a
	// short pause of the holder (GC, CPU starvation) causes a failover.
	MinCheckTTL = 500 * time.Millisecond
)

// ClusterIDSuffix is appended to the lease key to form the key that stores
// the cluster id ("litefs/primary" -> "litefs/primary-cluster-id").
const ClusterIDSuffix = "-cluster-id"

// Config configures a Leaser. URL, Key, TTL and LockDelay are litefs.yml's
// lease.consul section; the other fields are tuning with safe defaults.
type Config struct {
	// URL is the Consul agent's address, http(s)://[:TOKEN@]HOST:PORT[/PREFIX].
	// The password part of the user info is the ACL token; the path is a
	// key prefix.
	URL string
	// Key is the KV key the candidates lock, below the URL's prefix.
	Key string
	// TTL is the session TTL (DefaultTTL when 0; MinTTL to MaxTTL).
	TTL time.Duration
	// LockDelay is the session lock-delay (DefaultLockDelay when 0).
	LockDelay time.Duration
	// CheckTTL is the TTL of the health check bound to the session
	// (DefaultCheckTTL when 0). A holder that stops passing it is replaced
	// after about CheckTTL + LockDelay.
	CheckTTL time.Duration
	// RenewInterval is how often the holder passes its check and renews its
	// session (CheckTTL/4 when 0; must be below CheckTTL/2).
	RenewInterval time.Duration
	// Logger receives the leaser's logs (slog.Default() when nil).
	Logger *slog.Logger
}

// endpoint is a parsed Config.URL.
type endpoint struct {
	scheme  string // "http" or "https"
	address string // host:port
	token   string // ACL token, "" for none
	prefix  string // key prefix without surrounding slashes, "" for none
}

// withDefaults returns c with every zero field set to its default, or an
// error naming the first invalid field.
func (c Config) withDefaults() (Config, error) {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.LockDelay == 0 {
		c.LockDelay = DefaultLockDelay
	}
	if c.CheckTTL == 0 {
		c.CheckTTL = DefaultCheckTTL
	}
	if c.RenewInterval == 0 {
		c.RenewInterval = c.CheckTTL / 4
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch {
	case c.TTL < MinTTL || c.TTL > MaxTTL:
		return c, fmt.Errorf("lease.consul.ttl is %s: Consul accepts session TTLs from %s to %s", c.TTL, MinTTL, MaxTTL)
	case c.LockDelay < 0 || c.LockDelay > MaxLockDelay:
		return c, fmt.Errorf("lease.consul.lock-delay is %s: use a value from 1ms to %s", c.LockDelay, MaxLockDelay)
	case c.CheckTTL < MinCheckTTL || c.CheckTTL > c.TTL:
		return c, fmt.Errorf("consul check TTL is %s: use a value from %s to the session TTL (%s)", c.CheckTTL, MinCheckTTL, c.TTL)
	case c.RenewInterval <= 0 || c.RenewInterval >= c.CheckTTL/2:
		return c, fmt.Errorf("consul renew interval is %s: it must be above 0 and below half the check TTL (%s)", c.RenewInterval, c.CheckTTL)
	}
	return c, nil
}

// parseURL splits lease.consul.url into address, token and key prefix.
func parseURL(raw string) (endpoint, error) {
	if raw == "" {
		return endpoint{}, errors.New("lease.consul.url is empty: set it to the Consul agent's URL, e.g. http://localhost:8500")
	}
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the whole URL, token included: keep its cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return endpoint{}, fmt.Errorf("lease.consul.url %q: %w", redact(raw), err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return endpoint{}, fmt.Errorf("lease.consul.url %q: scheme must be http or https", redact(raw))
	case u.Host == "":
		return endpoint{}, fmt.Errorf("lease.consul.url %q has no host: write it as http://HOST:PORT", redact(raw))
	case u.RawQuery != "" || u.Fragment != "":
		return endpoint{}, fmt.Errorf("lease.consul.url %q: a query or fragment is not allowed", redact(raw))
	}
	// No port means the scheme's (80, 443), as in any URL: an agent behind
	// a proxy is often reached that way.
	ep := endpoint{scheme: u.Scheme, address: u.Host, prefix: strings.Trim(u.Path, "/")}
	if u.User != nil {
		token, ok := u.User.Password()
		if !ok || token == "" {
			return endpoint{}, fmt.Errorf("lease.consul.url %q: the ACL token goes in the password part, e.g. http://:TOKEN@HOST:8500", redact(raw))
		}
		ep.token = token
	}
	return ep, nil
}

// leaseKey joins the URL's prefix and lease.consul.key.
func leaseKey(prefix, key string) (string, error) {
	key = strings.Trim(key, "/")
	if key == "" {
		return "", errors.New("lease.consul.key is empty: set it to the KV key the nodes compete for, e.g. litefs/primary")
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("lease.consul.key %q: empty, '.' or '..' path segments are not allowed", key)
		}
	}
	if prefix == "" {
		return key, nil
	}
	return prefix + "/" + key, nil
}

// redact hides the password (ACL token) of a URL for error messages.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if i := strings.Index(raw, "@"); i >= 0 {
			return "<redacted>" + raw[i:]
		}
		return raw
	}
	return u.Redacted()
}
