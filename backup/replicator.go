package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
	"golang.org/x/sys/unix"
)

// Defaults of the `backup:` settings.
const (
	DefaultSyncInterval = time.Second
	DefaultRetention    = 24 * time.Hour
	// DefaultSnapshotInterval is how often a new snapshot is written to
	// level 9, bounding the files a restore reads.
	DefaultSnapshotInterval = time.Hour
	// maxBatchBytes bounds one level-0 upload; a longer backlog is sent in
	// several batches.
	maxBatchBytes = 64 << 20
	// maxBackoff bounds the wait between retries after a failed sync.
	maxBackoff = 30 * time.Second
)

// Options configure a Replicator.
type Options struct {
	SyncInterval     time.Duration // default 1s
	Retention        time.Duration // default 24h
	SnapshotInterval time.Duration // default 1h
	// CompactionInterval is how often level-0 files are merged into one
	// level-1 file; 0 turns compaction off.
	CompactionInterval time.Duration
	Logger             *slog.Logger
}

// Replicator uploads the LTX history of every database of a store while
// the store is the primary. It reads files already on disk, in the
// background: commits never wait for it.
type Replicator struct {
	store  *litefs.Store
	client *Client
	opts   Options
	log    *slog.Logger

	mu  sync.Mutex
	dbs map[string]*dbState
}

// NewReplicator returns a replicator of store's databases into client's
// bucket. Run starts it.
func NewReplicator(store *litefs.Store, client *Client, opts Options) *Replicator {
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.SnapshotInterval <= 0 {
		opts.SnapshotInterval = DefaultSnapshotInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Replicator{store: store, client: client, opts: opts,
		log: opts.Logger.With("component", "backup"), dbs: make(map[string]*dbState)}
}

// Run syncs every sync interval until ctx ends; it returns nil then. Only
// a primary uploads; on a replica it waits. Failed syncs are retried with
// backoff and counted, never returned.
func (r *Replicator) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !r.store.IsPrimary() {
			r.forget()
			continue
		}
		for _, db := range r.store.DBs() {
			if ctx.Err() != nil {
				return nil
			}
			r.syncDB(ctx, db)
		}
	}
}

// forget drops what is known about the bucket, so that a node that becomes
// primary again reads the bucket's head first.
func (r *Replicator) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, st := range r.dbs {
		st.known = false
	}
}

// state returns the sync state of database name, creating it.
func (r *Replicator) state(name string) *dbState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.dbs[name]
	if st == nil {
		st = &dbState{created: time.Now()}
		r.dbs[name] = st
	}
	return st
}

// syncDB runs one sync of db unless it is backing off or refused, and
// records the outcome.
func (r *Replicator) syncDB(ctx context.Context, db *litefs.DB) {
	st := r.state(db.Name())
	now := time.Now()
	if st.refused() != "" || now.Before(st.retryAt()) {
		return
	}
	err := r.sync(ctx, db, st)
	var refusal *RefusedError
	switch {
	case err == nil:
		st.succeeded()
	case errors.As(err, &refusal):
		st.refuse(refusal.Error())
		r.log.Error("backup refused: the bucket is not ours to overwrite", "db", db.Name(), "reason", refusal.Error())
	case ctx.Err() != nil:
	default:
		wait := st.failed(err, maxBackoff)
		r.log.Warn("backup sync failed; retrying", "db", db.Name(), "error", err, "retry_in", wait)
	}
}

// sync brings the bucket up to db's current position.
func (r *Replicator) sync(ctx context.Context, db *litefs.DB, st *dbState) error {
	name := db.Name()
	local := db.Pos()
	if local.TXID == 0 {
		return nil
	}
	if !st.isKnown() {
		head, err := r.client.Head(ctx, name)
		if err != nil {
			return err
		}
		if err := r.checkHead(db, head.Pos, local); err != nil {
			return err
		}
		st.setBucket(head.Pos, head.Snapshot, head.Objects)
	}
	// Only what is durable here is uploaded: a WAL commit is not fsynced
	// per transaction, and a bucket ahead of this node after a power loss
	// would be refused. One syncfs per sync makes everything up to target
	// durable (docs/backup.md).
	target := db.Pos().TXID
	if st.bucketPos().TXID < target {
		if err := syncFS(db.LTXDir()); err != nil {
			return fmt.Errorf("make %s durable before uploading it: %w", name, err)
		}
	}
	for {
		remote := st.bucketPos()
		if remote.TXID >= target {
			break
		}
		if err := r.uploadNext(ctx, db, st, remote, target); err != nil {
			return err
		}
	}
	if err := r.maybeCompact(ctx, db, st); err != nil {
		return err
	}
	return r.maybeSnapshot(ctx, db, st)
}

// syncFS flushes the filesystem holding dir (syncfs(2)).
func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Syncfs(int(f.Fd()))
}

// checkHead refuses a bucket that is ahead of local or diverged from it.
func (r *Replicator) checkHead(db *litefs.DB, remote, local ltx.Pos) error {
	switch {
	case remote.TXID == 0:
		return nil
	case remote.TXID > local.TXID:
		return &RefusedError{DB: db.Name(), Reason: fmt.Sprintf("bucket is ahead: it holds txid %s, this node %s", remote.TXID, local.TXID)}
	case remote.TXID == local.TXID && remote.PostApplyChecksum != local.PostApplyChecksum:
		return &RefusedError{DB: db.Name(), Reason: fmt.Sprintf("diverged at txid %s: bucket checksum %s, this node %s",
			remote.TXID, remote.PostApplyChecksum, local.PostApplyChecksum)}
	}
	if remote.TXID == local.TXID {
		return nil
	}
	f, err := db.OpenLTX(remote.TXID + 1)
	if errors.Is(err, litefs.ErrLTXNotFound) {
		return nil // history gone locally: uploadNext sends a snapshot
	} else if err != nil {
		return fmt.Errorf("open ltx %s of %s: %w", remote.TXID+1, db.Name(), err)
	}
	defer f.Close()
	hdr, _, err := readEnds(f, f.Size())
	if err != nil {
		return fmt.Errorf("ltx %s of %s: %w", remote.TXID+1, db.Name(), err)
	}
	if !hdr.IsSnapshot() && hdr.PreApplyChecksum != remote.PostApplyChecksum {
		return &RefusedError{DB: db.Name(), Reason: fmt.Sprintf("diverged at txid %s: bucket checksum %s, this node's history %s",
			remote.TXID, remote.PostApplyChecksum, hdr.PreApplyChecksum)}
	}
	return nil
}

// RefusedError says why the bucket is left alone: it is ahead of this node
// or its history differs (by checksum) from this node's.
type RefusedError struct {
	DB     string
	Reason string
}

// Error says which database is refused and why.
func (e *RefusedError) Error() string { return fmt.Sprintf("backup of %q: %s", e.DB, e.Reason) }
