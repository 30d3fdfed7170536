package main

import (
	"strings"
	"testing"
	"time"
)

func TestValidate_Backup(t *testing.T) {
	on := func(c *Config) { c.Backup.Type, c.Backup.Bucket = "s3", "b" }
	runValidate(t, []validateCase{
		{"off by default", func(c *Config) {}, ""},
		{"s3 with bucket", on, ""},
		{"s3 with endpoint and path", func(c *Config) {
			on(c)
			c.Backup.Endpoint, c.Backup.Path, c.Backup.ForcePathStyle = "http://127.0.0.1:9000", "litefs/prod", true
		}, ""},
		{"unknown type", func(c *Config) { on(c); c.Backup.Type = "gcs" }, `backup.type "gcs" is not supported`},
		{"missing bucket", func(c *Config) { on(c); c.Backup.Bucket = "" }, "backup.bucket is empty"},
		{"bucket without type", func(c *Config) { c.Backup.Bucket = "b" }, "backup.type is empty"},
		{"endpoint not a URL", func(c *Config) { on(c); c.Backup.Endpoint = "127.0.0.1:9000" }, "backup.endpoint"},
		{"path with leading slash", func(c *Config) { on(c); c.Backup.Path = "/x" }, "backup.path"},
		{"zero sync interval", func(c *Config) { on(c); c.Backup.SyncInterval = 0 }, "backup.sync-interval is 0"},
		{"negative retention", func(c *Config) { on(c); c.Backup.Retention = -time.Second }, "backup.retention is negative"},
		{"zero retention", func(c *Config) { on(c); c.Backup.Retention = 0 }, "backup.retention is 0"},
	})
}

func TestParseConfig_Backup(t *testing.T) {
	cfg, err := ParseConfig([]byte("lease:\n  type: static\nbackup:\n  type: s3\n  bucket: bk\n  path: p\n  endpoint: http://127.0.0.1:1\n  force-path-style: true\n  sync-interval: 250ms\n  max-lag: 5s\n"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Backup
	if b.Type != "s3" || b.Bucket != "bk" || b.Path != "p" || !b.ForcePathStyle || b.SyncInterval != 250*time.Millisecond || b.MaxLag != 5*time.Second {
		t.Fatalf("backup = %+v", b)
	}
	if b.Retention != 24*time.Hour {
		t.Fatalf("retention default = %s, want 24h", b.Retention)
	}
	for _, tt := range []struct{ name, doc, want string }{
		{"unknown key", "backup:\n  type: s3\n  secret-key: x\n", "line 3"},
		{"bad duration", "backup:\n  sync-interval: soon\n", "line 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.doc), false, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseConfig = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
