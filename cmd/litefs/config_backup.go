package main

import (
	"net/url"
	"strings"

	"github.com/litefs/litefs/backup"
)

// validateBackup checks the backup section when it is enabled.
func (c *Config) validateBackup(p *problems) {
	b := c.Backup
	if !b.Enabled() {
		if b.Bucket != "" || b.Endpoint != "" || b.Path != "" {
			p.add("backup.type is empty but backup.bucket, endpoint or path is set: set backup.type: s3 to turn backup on, or remove the section")
		}
		return
	}
	if b.Type != "s3" {
		p.add("backup.type %q is not supported: use s3 (any S3-compatible store, with backup.endpoint)", b.Type)
	}
	if b.Bucket == "" {
		p.add("backup.bucket is empty: set the bucket the backup is written to")
	}
	if b.Endpoint != "" {
		u, err := url.Parse(b.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add("backup.endpoint %q is not an http:// or https:// URL: write it like https://s3.example.com:9000", b.Endpoint)
		}
	}
	if strings.HasPrefix(b.Path, "/") || strings.Contains(b.Path, "//") {
		p.add("backup.path %q: write the key prefix without a leading slash or empty parts, e.g. litefs/prod", b.Path)
	}
	if b.SyncInterval == 0 {
		p.add("backup.sync-interval is 0: set how often new transactions are uploaded, e.g. 1s")
	}
	if b.Retention == 0 {
		p.add("backup.retention is 0: set how far back restores can go, e.g. 24h")
	}
	if b.SnapshotInterval == 0 {
		p.add("backup.snapshot-interval is 0: set how often a full snapshot is uploaded, e.g. 1h")
	}
}

// backupConfig is the backup package's view of the section.
func (b BackupConfig) backupConfig() backup.Config {
	return backup.Config{Bucket: b.Bucket, Path: strings.TrimSuffix(b.Path, "/"), Endpoint: b.Endpoint,
		Region: b.Region, ForcePathStyle: b.ForcePathStyle}
}

// replicatorOptions are the backup package's timings.
func (b BackupConfig) replicatorOptions() backup.Options {
	return backup.Options{SyncInterval: b.SyncInterval, Retention: b.Retention, SnapshotInterval: b.SnapshotInterval,
		CompactionInterval: b.CompactionInterval}
}
