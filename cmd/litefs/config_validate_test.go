package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// staticPrimary is a valid configuration: the primary of a static cluster.
func staticPrimary() Config {
	c := DefaultConfig()
	c.Lease.Type = "static"
	return c
}

// validateCase mutates a valid config and expects an error with want in it.
type validateCase struct {
	name   string
	mutate func(c *Config)
	want   string
}

// runValidate runs Validate over cases; an empty want means no error.
func runValidate(t *testing.T, cases []validateCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c := staticPrimary()
			tt.mutate(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Validate() = nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidate_ValidConfigsPass(t *testing.T) {
	runValidate(t, []validateCase{
		{"static primary", func(c *Config) {}, ""},
		{"static replica with primary URL", func(c *Config) {
			c.Lease.Candidate, c.Lease.AdvertiseURL = false, "http://primary:20202"
			c.Lease.Databases = []string{"app.db", "jobs.db"}
		}, ""},
		{"consul candidate", func(c *Config) {
			c.Lease.Type, c.Lease.AdvertiseURL = "consul", "https://node1:20202"
			c.Lease.Consul.URL, c.Lease.Consul.Key = "http://localhost:8500", "litefs/primary"
		}, ""},
		{"retention zero keeps newest only", func(c *Config) { c.Data.Retention = 0 }, ""},
		{"tls cert and key", func(c *Config) { c.HTTP.TLS.Cert, c.HTTP.TLS.Key = "c", "k" }, ""},
		{"tls cert, key and ca with an https URL", func(c *Config) {
			c.HTTP.TLS = TLSConfig{Cert: "c", Key: "k", CA: "ca"}
			c.Lease.AdvertiseURL = "https://node1:20202"
		}, ""},
		{"static replica without tls following an https primary", func(c *Config) {
			c.Lease.Candidate, c.Lease.AdvertiseURL = false, "https://primary:20202"
		}, ""},
		{"sibling dirs sharing a prefix", func(c *Config) { c.Data.Dir, c.FUSE.Dir = "/srv/litefs", "/srv/litefs2" }, ""},
		{"proxy complete", func(c *Config) { c.Proxy.Addr, c.Proxy.Target, c.Proxy.DB = ":8080", "localhost:8081", "app.db" }, ""},
	})
}

func TestValidate_LeaseType(t *testing.T) {
	runValidate(t, []validateCase{
		{"missing", func(c *Config) { c.Lease.Type = "" }, "lease.type is required: set it to static or consul"},
		{"unknown", func(c *Config) { c.Lease.Type = "etcd" }, `lease.type "etcd" is not supported: set it to static or consul`},
	})
}

func TestValidate_FUSEDirEqualsDataDir(t *testing.T) {
	runValidate(t, []validateCase{
		{"same string", func(c *Config) { c.FUSE.Dir, c.Data.Dir = "/x", "/x" }, "fuse.dir and data.dir are the same directory"},
		{"same after cleaning", func(c *Config) { c.FUSE.Dir, c.Data.Dir = "/x/y/../z/", "/x/z" }, "same directory"},
		{"same relative and absolute", func(c *Config) {
			wd, _ := os.Getwd()
			c.FUSE.Dir, c.Data.Dir = "mnt", filepath.Join(wd, "mnt")
		}, "same directory"},
		{"mount inside data", func(c *Config) { c.FUSE.Dir, c.Data.Dir = "/var/lib/litefs/mnt", "/var/lib/litefs" }, "fuse.dir (/var/lib/litefs/mnt) is inside data.dir"},
		{"data inside mount", func(c *Config) { c.FUSE.Dir, c.Data.Dir = "/litefs", "/litefs/data" }, "data.dir (/litefs/data) is inside fuse.dir"},
		{"mount at root", func(c *Config) { c.FUSE.Dir = "/" }, "is inside fuse.dir"},
	})
}

func TestValidate_EmptyDirs(t *testing.T) {
	runValidate(t, []validateCase{
		{"data.dir", func(c *Config) { c.Data.Dir = "" }, "data.dir is empty"},
		{"fuse.dir", func(c *Config) { c.FUSE.Dir = "" }, "fuse.dir is empty"},
	})
}

func TestValidate_LeaseRequirements(t *testing.T) {
	consul := func(c *Config) {
		c.Lease.Type, c.Lease.AdvertiseURL = "consul", "http://n1:20202"
		c.Lease.Consul.URL, c.Lease.Consul.Key = "http://localhost:8500", "k"
	}
	runValidate(t, []validateCase{
		{"databases on candidate", func(c *Config) { c.Lease.Databases = []string{"a.db"} }, "lease.databases is set on a candidate"},
		{"static replica without primary URL", func(c *Config) { c.Lease.Candidate = false }, "lease.advertise-url is required on a static replica"},
		{"consul without url", func(c *Config) { consul(c); c.Lease.Consul.URL = "" }, "lease.consul.url is required"},
		{"consul without key", func(c *Config) { consul(c); c.Lease.Consul.Key = "" }, "lease.consul.key is required"},
		{"consul without advertise-url", func(c *Config) { consul(c); c.Lease.AdvertiseURL = "" }, "lease.advertise-url is required when lease.type is consul"},
		{"consul ttl below Consul minimum", func(c *Config) { consul(c); c.Lease.Consul.TTL = 5 * time.Second }, "lease.consul.ttl is 5s"},
		{"consul ttl zero", func(c *Config) { consul(c); c.Lease.Consul.TTL = 0 }, "lease.consul.ttl is 0"},
		{"advertise-url not a URL", func(c *Config) { c.Lease.AdvertiseURL = "primary:20202" }, `lease.advertise-url "primary:20202" is not a URL`},
		{"consul url not a URL", func(c *Config) { consul(c); c.Lease.Consul.URL = "localhost" }, `lease.consul.url "localhost" is not a URL`},
	})
}

func TestValidate_DatabaseNames(t *testing.T) {
	replica := func(names ...string) func(c *Config) {
		return func(c *Config) {
			c.Lease.Candidate, c.Lease.AdvertiseURL, c.Lease.Databases = false, "http://p:20202", names
		}
	}
	runValidate(t, []validateCase{
		{"slash", replica("ok.db", "a/b.db"), "lease.databases[1]: invalid database name"},
		{"empty", replica(""), "lease.databases[0]: invalid database name"},
		{"dotdot", replica(".."), "lease.databases[0]: invalid database name"},
		{"nul", replica("a\x00b"), "lease.databases[0]: invalid database name"},
		{"too long", replica(strings.Repeat("a", 256)), "lease.databases[0]: invalid database name"},
		{"255 bytes ok", replica(strings.Repeat("a", 255)), ""},
		{"proxy.db", func(c *Config) { c.Proxy.DB = "../x" }, "proxy.db: invalid database name"},
	})
}

func TestValidate_Durations(t *testing.T) {
	runValidate(t, []validateCase{
		{"negative retention", func(c *Config) { c.Data.Retention = -time.Second }, "data.retention is negative (-1s)"},
		{"negative reconnect-delay", func(c *Config) { c.Lease.ReconnectDelay = -1 }, "lease.reconnect-delay is negative"},
		{"negative proxy.max-lag", func(c *Config) { c.Proxy.MaxLag = -time.Minute }, "proxy.max-lag is negative"},
		{"negative snapshot-timeout", func(c *Config) { c.HTTP.SnapshotTimeout = -time.Minute }, "http.snapshot-timeout is negative"},
		{"zero monitor interval", func(c *Config) { c.Data.RetentionMonitorInterval = 0 }, "data.retention-monitor-interval is 0"},
		{"renew equals ttl", func(c *Config) { c.Halt.RenewInterval = c.Halt.TTL }, "halt.renew-interval (5s) must be shorter than halt.ttl (5s)"},
		{"renew above ttl", func(c *Config) { c.Halt.TTL, c.Halt.RenewInterval = time.Second, 2*time.Second }, "must be shorter than halt.ttl"},
		{"zero halt ttl", func(c *Config) { c.Halt.TTL = 0 }, "halt.ttl is 0"},
		{"zero renew interval", func(c *Config) { c.Halt.RenewInterval = 0 }, "halt.renew-interval is 0"},
	})
}

func TestValidate_HTTPProxyExecLog(t *testing.T) {
	runValidate(t, []validateCase{
		{"tls cert without key", func(c *Config) { c.HTTP.TLS.Cert = "c.pem" }, "http.tls.cert and http.tls.key must be set together"},
		{"tls key without cert", func(c *Config) { c.HTTP.TLS.Key = "k.pem" }, "must be set together"},
		{"tls ca alone", func(c *Config) { c.HTTP.TLS.CA = "ca.pem" }, "http.tls.ca is set without http.tls.cert and http.tls.key"},
		{"tls with an http own URL", func(c *Config) {
			c.HTTP.TLS.Cert, c.HTTP.TLS.Key, c.Lease.AdvertiseURL = "c", "k", "http://node1:20202"
		}, "this node serves HTTPS, so peers must reach it at https://"},
		{"tls replica with an http primary URL", func(c *Config) {
			c.HTTP.TLS.Cert, c.HTTP.TLS.Key = "c", "k"
			c.Lease.Candidate, c.Lease.AdvertiseURL = false, "http://primary:20202"
		}, "the primary of a TLS cluster serves HTTPS; write https://"},
		{"empty http.addr", func(c *Config) { c.HTTP.Addr = "" }, "http.addr is empty"},
		{"bad http.addr", func(c *Config) { c.HTTP.Addr = "20202" }, `http.addr "20202" is not host:port`},
		{"proxy without target", func(c *Config) { c.Proxy.Addr, c.Proxy.DB = ":8080", "a.db" }, "proxy.target is required"},
		{"proxy without db", func(c *Config) { c.Proxy.Addr, c.Proxy.Target = ":8080", "t:1" }, "proxy.db is required"},
		{"proxy always-forward not a regexp", func(c *Config) {
			c.Proxy.Addr, c.Proxy.Target, c.Proxy.DB, c.Proxy.AlwaysForward = ":8080", "t:1", "a.db", []string{"^/ok$", "/bad("}
		}, `proxy.always-forward[1] "/bad(" is not a regular expression`},
		{"empty exec cmd", func(c *Config) { c.Exec = ExecConfigs{{Cmd: "a"}, {Cmd: " "}} }, "exec[1].cmd is empty"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format "xml" is not supported: set it to text or json`},
		{"empty log format", func(c *Config) { c.Log.Format = "" }, `log.format "" is not supported`},
	})
}

func TestValidate_ReportsEveryProblem(t *testing.T) {
	c := DefaultConfig() // lease.type missing
	c.FUSE.Dir = c.Data.Dir
	c.Log.Format = "xml"
	err := c.Validate()
	wantErrContains(t, err, "lease.type is required", "same directory", "log.format")
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Errorf("got %d problems, want 3: %v", n, err)
	}
}
