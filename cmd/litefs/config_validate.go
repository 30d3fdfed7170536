package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/litefs/litefs"
	"github.com/litefs/litefs/proxy"
)

// Consul's limits on a session TTL.
const (
	consulMinTTL = 10 * time.Second
	consulMaxTTL = 24 * time.Hour
)

// problems collects validation errors.
type problems []error

// add records one problem; the message says what is wrong and what to do.
func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Errorf(format, args...))
}

// Validate checks the configuration before anything is mounted. It reports
// every problem it finds, joined with errors.Join (one per line), each
// naming the key, what is wrong and what to do. It does not touch the
// filesystem: directories may not exist yet.
func (c *Config) Validate() error {
	var p problems
	c.validateDirs(&p)
	c.validateLease(&p)
	c.validateDurations(&p)
	c.validateHTTP(&p)
	c.validateProxy(&p)
	c.validateBackup(&p)
	c.validateExecAndLog(&p)
	return errors.Join(p...)
}

// validateDirs checks data.dir and fuse.dir, which must be distinct and must
// not contain one another (compared as cleaned absolute paths; symlinks are
// not resolved).
func (c *Config) validateDirs(p *problems) {
	if c.Data.Dir == "" {
		p.add("data.dir is empty: set it to the directory that holds the databases, e.g. /var/lib/litefs")
	}
	if c.FUSE.Dir == "" {
		p.add("fuse.dir is empty: set it to the mount point applications use, e.g. /litefs")
	}
	if c.Data.Dir == "" || c.FUSE.Dir == "" {
		return
	}
	data, err := filepath.Abs(c.Data.Dir)
	if err != nil {
		p.add("data.dir %q: cannot make it absolute: %w", c.Data.Dir, err)
		return
	}
	mnt, err := filepath.Abs(c.FUSE.Dir)
	if err != nil {
		p.add("fuse.dir %q: cannot make it absolute: %w", c.FUSE.Dir, err)
		return
	}
	switch {
	case data == mnt:
		p.add("fuse.dir and data.dir are the same directory (%s): the mount would hide the data; use two separate directories", mnt)
	case isWithin(data, mnt):
		p.add("fuse.dir (%s) is inside data.dir (%s): move the mount point outside the data directory", mnt, data)
	case isWithin(mnt, data):
		p.add("data.dir (%s) is inside fuse.dir (%s): move the data directory outside the mount point", data, mnt)
	}
}

// isWithin reports whether the cleaned absolute path child is strictly
// inside the directory parent.
func isWithin(parent, child string) bool {
	if parent == child {
		return false
	}
	if !strings.HasSuffix(parent, string(filepath.Separator)) {
		parent += string(filepath.Separator)
	}
	return strings.HasPrefix(child, parent)
}

// validateLease checks the lease section for its type.
func (c *Config) validateLease(p *problems) {
	l := &c.Lease
	switch l.Type {
	case "":
		p.add("lease.type is required: set it to static or consul")
	case "static":
		if !l.Candidate && l.AdvertiseURL == "" {
			p.add("lease.advertise-url is required on a static replica (lease.candidate: false): set it to the primary's URL, e.g. http://primary:20202")
		}
	case "consul":
		if l.Consul.URL == "" {
			p.add("lease.consul.url is required when lease.type is consul: set it to the Consul agent's URL, e.g. http://localhost:8500")
		}
		if l.Consul.Key == "" {
			p.add("lease.consul.key is required when lease.type is consul: set it to the KV key the nodes compete for, e.g. litefs/primary")
		}
		if l.AdvertiseURL == "" {
			p.add("lease.advertise-url is required when lease.type is consul: set it to the URL other nodes reach this node at, e.g. http://node1:20202")
		}
		if l.Consul.TTL > 0 && (l.Consul.TTL < consulMinTTL || l.Consul.TTL > consulMaxTTL) {
			p.add("lease.consul.ttl is %s: Consul accepts session TTLs from %s to %s; pick a value in that range", l.Consul.TTL, consulMinTTL, consulMaxTTL)
		}
		checkURL(p, "lease.consul.url", l.Consul.URL)
	default:
		p.add("lease.type %q is not supported: set it to static or consul", l.Type)
	}
	checkURL(p, "lease.advertise-url", l.AdvertiseURL)
	if len(l.Databases) > 0 && l.Candidate {
		p.add("lease.databases is set on a candidate: a node that may become primary must hold every database; remove lease.databases or set lease.candidate: false")
	}
	for i, name := range l.Databases {
		if err := litefs.ValidateName(name); err != nil {
			p.add("lease.databases[%d]: %w: use the database's file name as it appears in the mount", i, err)
		}
	}
}

// checkURL reports a non-empty value that is not an http(s) URL with a host.
func checkURL(p *problems, key, value string) {
	if value == "" {
		return
	}
	u, err := url.Parse(value)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		p.add("%s %q is not a URL: write it as http://host:port or https://host:port", key, value)
	}
}

// validateDurations rejects negative durations and values that cannot work.
func (c *Config) validateDurations(p *problems) {
	all := []struct {
		key string
		d   time.Duration
	}{
		{"data.retention", c.Data.Retention},
		{"data.retention-monitor-interval", c.Data.RetentionMonitorInterval},
		{"http.snapshot-timeout", c.HTTP.SnapshotTimeout},
		{"lease.reconnect-delay", c.Lease.ReconnectDelay},
		{"lease.demote-delay", c.Lease.DemoteDelay},
		{"lease.consul.ttl", c.Lease.Consul.TTL},
		{"lease.consul.lock-delay", c.Lease.Consul.LockDelay},
		{"halt.acquire-timeout", c.Halt.AcquireTimeout},
		{"halt.ttl", c.Halt.TTL},
		{"halt.renew-interval", c.Halt.RenewInterval},
		{"proxy.max-lag", c.Proxy.MaxLag},
		{"proxy.primary-redirect-timeout", c.Proxy.PrimaryRedirectTimeout},
		{"backup.sync-interval", c.Backup.SyncInterval},
		{"backup.retention", c.Backup.Retention},
		{"backup.snapshot-interval", c.Backup.SnapshotInterval},
		{"backup.compaction-interval", c.Backup.CompactionInterval},
		{"backup.max-lag", c.Backup.MaxLag},
	}
	for _, f := range all {
		if f.d < 0 {
			p.add("%s is negative (%s): durations must be 0 or more", f.key, f.d)
		}
	}
	if c.Data.RetentionMonitorInterval == 0 {
		p.add("data.retention-monitor-interval is 0: set how often old LTX files are removed, e.g. 1m")
	}
	if c.Lease.Type == "consul" && c.Lease.Consul.TTL == 0 {
		p.add("lease.consul.ttl is 0: set the Consul session TTL, e.g. 10s")
	}
	if c.Halt.TTL == 0 {
		p.add("halt.ttl is 0: set how long an unrenewed HALT lives, e.g. 5s")
	}
	if c.Halt.RenewInterval == 0 {
		p.add("halt.renew-interval is 0: set how often a holder renews its HALT, e.g. 1s (below halt.ttl)")
	}
	if c.Halt.TTL > 0 && c.Halt.RenewInterval > 0 && c.Halt.RenewInterval >= c.Halt.TTL {
		p.add("halt.renew-interval (%s) must be shorter than halt.ttl (%s), or a held HALT expires between renewals: lower halt.renew-interval, e.g. to a fifth of halt.ttl", c.Halt.RenewInterval, c.Halt.TTL)
	}
}

// validateHTTP checks the node API listener and TLS files.
func (c *Config) validateHTTP(p *problems) {
	if c.HTTP.Addr == "" {
		p.add("http.addr is empty: set this node's API listen address, e.g. :20202")
	} else if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		p.add("http.addr %q is not host:port: write it like :20202 or 10.0.0.1:20202", c.HTTP.Addr)
	}
	c.validateTLS(p)
}

// validateTLS checks the shape of http.tls; LoadTLS reads the files at
// start (docs/tls.md).
func (c *Config) validateTLS(p *problems) {
	t := c.HTTP.TLS
	if (t.Cert == "") != (t.Key == "") {
		p.add("http.tls.cert and http.tls.key must be set together: give both PEM files to serve HTTPS, or neither")
	}
	if t.CA != "" && t.Cert == "" && t.Key == "" {
		p.add("http.tls.ca is set without http.tls.cert and http.tls.key: the CA verifies peers for mutual TLS, which needs this node's own certificate; set all three, or remove ca")
	}
	if t.Cert == "" || !strings.HasPrefix(strings.ToLower(c.Lease.AdvertiseURL), "http://") {
		return
	}
	if c.Lease.Type == "static" && !c.Lease.Candidate {
		p.add("lease.advertise-url %q is http:// but http.tls is set: the primary of a TLS cluster serves HTTPS; write https://", c.Lease.AdvertiseURL)
	} else {
		p.add("lease.advertise-url %q is http:// but http.tls is set: this node serves HTTPS, so peers must reach it at https://", c.Lease.AdvertiseURL)
	}
}

// validateProxy checks the proxy section when the proxy is enabled.
func (c *Config) validateProxy(p *problems) {
	if c.Proxy.DB != "" {
		if err := litefs.ValidateName(c.Proxy.DB); err != nil {
			p.add("proxy.db: %w: use the database's file name as it appears in the mount", err)
		}
	}
	if c.Proxy.Addr == "" {
		return
	}
	if _, _, err := net.SplitHostPort(c.Proxy.Addr); err != nil {
		p.add("proxy.addr %q is not host:port: write it like :8080", c.Proxy.Addr)
	}
	if c.Proxy.Target == "" {
		p.add("proxy.target is required when proxy.addr is set: set it to the application's address, e.g. localhost:8081")
	}
	if c.Proxy.DB == "" {
		p.add("proxy.db is required when proxy.addr is set: name the database the proxy tracks, e.g. app.db")
	}
	if _, err := proxy.CompileRegexps("proxy.always-forward", c.Proxy.AlwaysForward); err != nil {
		p.add("%w: write Go regular expressions, e.g. ^/auth/callback/", err)
	}
}

// validateExecAndLog checks the exec list and the log section.
func (c *Config) validateExecAndLog(p *problems) {
	for i, e := range c.Exec {
		if strings.TrimSpace(e.Cmd) == "" {
			p.add("exec[%d].cmd is empty: give the command to run or remove the entry", i)
		}
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		p.add("log.format %q is not supported: set it to text or json", c.Log.Format)
	}
}
