package backup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/superfly/ltx"
)

// ErrNoBackup means the bucket holds nothing for the database (or nothing
// at or before the requested point).
var ErrNoBackup = errors.New("no backup of the database at or before that point")

// Plan lists the files that restore database name to txid (0: the newest)
// or to the newest point at or before ts (if not zero): the newest
// snapshot at or before the target, then the level-0..8 files that continue
// it one after the other, each starting where the previous ended. For a
// timestamp target the files themselves are filtered on their header
// timestamps while they are applied (Restore).
func (c *Client) Plan(ctx context.Context, name string, txid ltx.TXID, ts time.Time) ([]FileInfo, error) {
	if txid != 0 && !ts.IsZero() {
		return nil, errors.New("backup: restore to a txid or to a timestamp, not both")
	}
	snaps, err := c.List(ctx, name, SnapshotLevel)
	if err != nil {
		return nil, err
	}
	var plan []FileInfo
	for _, s := range snaps {
		if (txid != 0 && s.MaxTXID > txid) || (!ts.IsZero() && s.CreatedAt.After(ts)) {
			continue
		}
		if len(plan) == 0 || s.MaxTXID > plan[0].MaxTXID {
			plan = []FileInfo{s}
		}
	}
	// A timestamp restore uses level 0 only: a compacted file may end
	// after the timestamp while the level-0 files it merged do not.
	levels := Levels[:len(Levels)-1]
	if !ts.IsZero() {
		levels = Levels[:1]
	}
	var files []FileInfo
	for _, level := range levels {
		infos, err := c.List(ctx, name, level)
		if err != nil {
			return nil, err
		}
		files = append(files, infos...)
	}
	plan = extend(plan, files, txid)
	if len(plan) == 0 {
		return nil, fmt.Errorf("backup of %q: %w", name, ErrNoBackup)
	}
	if txid != 0 && plan[len(plan)-1].MaxTXID != txid {
		return nil, fmt.Errorf("backup of %q: txid %s is not a restore point (the files reach %s): %w",
			name, txid, plan[len(plan)-1].MaxTXID, ErrNoBackup)
	}
	return plan, nil
}

// extend appends to plan, while it can, the file that starts right after
// the plan's end (1 if plan is empty) and ends furthest without passing
// txid (0: no bound); lower levels win ties.
func extend(plan, files []FileInfo, txid ltx.TXID) []FileInfo {
	for {
		var end ltx.TXID
		if len(plan) > 0 {
			end = plan[len(plan)-1].MaxTXID
		}
		best := -1
		for i, f := range files {
			if f.MinTXID != end+1 || (txid != 0 && f.MaxTXID > txid) {
				continue
			}
			if best < 0 || f.MaxTXID > files[best].MaxTXID {
				best = i
			}
		}
		if best < 0 {
			return plan
		}
		plan = append(plan, files[best])
	}
}
