package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/litefs/litefs"
	"github.com/litefs/litefs/backup"
	lhttp "github.com/litefs/litefs/http"
)

// restoreAttempts and restoreRetryDelay bound how long a node with an empty
// data directory tries to reach the backup at start before it gives up.
const (
	restoreAttempts   = 5
	restoreRetryDelay = 2 * time.Second
)

// startBackup, with backup configured, restores every database the backup
// holds when this candidate's store is empty (before the node serves or
// runs exec: docs/backup.md), then returns the replicator that uploads new
// transactions while this node is primary; nil without backup.
func startBackup(ctx context.Context, cfg *Config, store *litefs.Store, log *slog.Logger) (*backup.Replicator, error) {
	if !cfg.Backup.Enabled() {
		return nil, nil
	}
	client, err := backup.NewClient(ctx, cfg.Backup.backupConfig())
	if err != nil {
		return nil, err
	}
	if cfg.Lease.Candidate && len(store.DBs()) == 0 {
		if err := restoreOnStart(ctx, client, store, cfg.Data.Dir, log); err != nil {
			return nil, err
		}
	}
	opts := cfg.Backup.replicatorOptions()
	opts.Logger = log
	return backup.NewReplicator(store, client, opts), nil
}

// restoreOnStart restores every database of the backup into the empty
// store at the backup's newest position, retrying a store it cannot reach
// a few times; if it still cannot, the start fails rather than run the
// application on an empty database.
func restoreOnStart(ctx context.Context, client *backup.Client, store *litefs.Store, dataDir string, log *slog.Logger) error {
	var names []string
	var err error
	for attempt := 1; attempt <= restoreAttempts; attempt++ {
		if names, err = client.ListDBs(ctx); err == nil {
			break
		}
		log.Warn("backup: cannot list the bucket to restore an empty data directory; retrying", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(restoreRetryDelay):
		}
	}
	if err != nil {
		return fmt.Errorf("restore on start: data.dir is empty and the backup cannot be read, so it is unknown whether it holds databases; fix the store or its credentials, or start without backup: %w", err)
	}
	for _, name := range names {
		if err := restoreOne(ctx, client, store, dataDir, name, log); err != nil {
			return err
		}
	}
	return nil
}

// restoreOne restores database name from the backup into store.
func restoreOne(ctx context.Context, client *backup.Client, store *litefs.Store, dataDir, name string, log *slog.Logger) error {
	if err := litefs.ValidateName(name); err != nil {
		log.Warn("backup: skipping a bucket entry that is not a database name", "name", name, "error", err)
		return nil
	}
	start := time.Now()
	f, err := os.CreateTemp(dataDir, ".restore-*.ltx")
	if err != nil {
		return fmt.Errorf("restore %q on start: %w", name, err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	pos, err := client.RestoreSnapshot(ctx, name, dataDir, f, backup.RestoreOptions{})
	if errors.Is(err, backup.ErrNoBackup) {
		return nil
	} else if err != nil {
		return fmt.Errorf("restore %q on start: %w", name, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		return fmt.Errorf("restore %q on start: %w", name, err)
	}
	db, err := store.CreateDB(name)
	if err != nil {
		return fmt.Errorf("restore %q on start: %w", name, err)
	}
	got, err := db.ApplyLTX(ctx, f)
	if err != nil {
		_ = store.DeleteDB(name)
		return fmt.Errorf("restore %q on start: apply: %w", name, err)
	}
	if got != pos {
		return fmt.Errorf("restore %q on start: the database is at %s, the backup at %s", name, got, pos)
	}
	log.Info("backup: restored database on start", "db", name, "txid", pos.TXID.String(),
		"checksum", pos.PostApplyChecksum.String(), "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// backupStatusFunc adapts the replicator's status for the HTTP server.
func backupStatusFunc(rep *backup.Replicator) func() []lhttp.BackupStatus {
	return func() []lhttp.BackupStatus {
		all := rep.Status()
		out := make([]lhttp.BackupStatus, len(all))
		for i, s := range all {
			out[i] = lhttp.BackupStatus{Name: s.Name, BucketTXID: uint64(s.BucketTXID), LocalTXID: uint64(s.LocalTXID),
				LagSeconds: s.LagDuration, Errors: s.Errors, Uploads: s.Uploads, Deletes: s.Deletes, Objects: s.Objects,
				LastError: s.LastError, Refused: s.Refused}
		}
		return out
	}
}
