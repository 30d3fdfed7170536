package backup

import (
	"context"
	"time"

	"github.com/litefs/litefs"
)

// maybeSnapshot writes a new snapshot once SnapshotInterval has passed
// since the last one and the database changed since, then applies
// retention. A restore then reads one snapshot and the level-0 files after
// it: at most SnapshotInterval worth.
func (r *Replicator) maybeSnapshot(ctx context.Context, db *litefs.DB, st *dbState) error {
	st.mu.Lock()
	last, snapTXID, bucket := st.lastSnapshot, st.snapshotTXID, st.bucket.TXID
	st.mu.Unlock()
	if time.Since(last) < r.opts.SnapshotInterval || snapTXID == bucket {
		return nil
	}
	if err := r.uploadSnapshot(ctx, db, st); err != nil {
		return err
	}
	return r.enforceRetention(ctx, db.Name(), st, time.Now().Add(-r.opts.Retention))
}

// enforceRetention removes what no restore point after cutoff needs: the
// newest snapshot taken at or before cutoff is kept (every later point
// restores from it or a newer one), older snapshots and every level-0 file
// that ends at or before it are deleted. With no snapshot that old nothing
// is deleted.
func (r *Replicator) enforceRetention(ctx context.Context, name string, st *dbState, cutoff time.Time) error {
	snaps, err := r.client.List(ctx, name, SnapshotLevel)
	if err != nil {
		return err
	}
	keep := -1
	for i, s := range snaps {
		if !s.CreatedAt.After(cutoff) && (keep < 0 || s.MaxTXID > snaps[keep].MaxTXID) {
			keep = i
		}
	}
	if keep < 0 {
		return nil
	}
	floor := snaps[keep].MaxTXID
	var drop []FileInfo
	for i, s := range snaps {
		if i != keep && s.MaxTXID < floor {
			drop = append(drop, s)
		}
	}
	for _, level := range Levels[:len(Levels)-1] {
		infos, err := r.client.List(ctx, name, level)
		if err != nil {
			return err
		}
		for _, info := range infos {
			if info.MaxTXID <= floor {
				drop = append(drop, info)
			}
		}
	}
	if err := r.client.DeleteLTX(ctx, name, drop); err != nil {
		return err
	}
	st.deleted(len(drop))
	if len(drop) > 0 {
		r.log.Info("backup retention removed old files", "db", name, "files", len(drop), "kept_snapshot_txid", floor)
	}
	return nil
}
