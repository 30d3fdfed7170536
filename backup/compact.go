package backup

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// CompactionLevel is the level compacted files are written to: the
// level-0 files uploaded since the last compaction, merged into one.
const CompactionLevel = 1

// maxCompactFiles bounds the level-0 files merged into one compacted file.
const maxCompactFiles = 10000

// maybeCompact merges, once CompactionInterval has passed, the level-0
// files that end after the newest level-1 file into one level-1 file, so
// a restore reads one object per interval instead of one per sync. The
// level-0 files stay (retention removes them with the snapshot they
// follow) so that every batch end remains a restore point.
func (r *Replicator) maybeCompact(ctx context.Context, db *litefs.DB, st *dbState) error {
	if r.opts.CompactionInterval <= 0 {
		return nil
	}
	st.mu.Lock()
	last := st.lastCompact
	st.mu.Unlock()
	if time.Since(last) < r.opts.CompactionInterval {
		return nil
	}
	name := db.Name()
	l1, err := r.client.List(ctx, name, CompactionLevel)
	if err != nil {
		return err
	}
	l0, err := r.client.List(ctx, name, 0)
	if err != nil {
		return err
	}
	var end ltx.TXID
	for _, f := range l1 {
		end = max(end, f.MaxTXID)
	}
	run := contiguousAfter(l0, end)
	if len(run) < 2 {
		st.compacted(0)
		return nil
	}
	data, hdr, err := r.mergeRemote(ctx, name, run)
	if err != nil {
		return fmt.Errorf("compact %s: %w", name, err)
	}
	first, lastFile := run[0], run[len(run)-1]
	if err := r.client.PutLTX(ctx, name, CompactionLevel, first.MinTXID, lastFile.MaxTXID, time.UnixMilli(hdr.Timestamp), data); err != nil {
		return err
	}
	st.compacted(1)
	return nil
}

// contiguousAfter returns the longest run of files (sorted by MinTXID) that
// follow one another, starting with the first file that starts after end.
func contiguousAfter(files []FileInfo, end ltx.TXID) []FileInfo {
	var run []FileInfo
	for _, f := range files {
		if f.MinTXID <= end {
			continue
		}
		if len(run) > 0 && f.MinTXID != run[len(run)-1].MaxTXID+1 {
			break
		}
		run = append(run, f)
		if len(run) == maxCompactFiles {
			break
		}
	}
	return run
}

// mergeRemote downloads files, checks their checksum chain and merges them
// into one LTX file; it returns the file and the last input's header.
func (r *Replicator) mergeRemote(ctx context.Context, name string, files []FileInfo) ([]byte, ltx.Header, error) {
	blobs := make([]ltxBlob, 0, len(files))
	for _, info := range files {
		rc, err := r.client.GetLTX(ctx, name, info)
		if err != nil {
			return nil, ltx.Header{}, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, ltx.Header{}, fmt.Errorf("read %s: %w", ltx.FormatFilename(info.MinTXID, info.MaxTXID), err)
		}
		hdr, trailer, err := readEnds(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return nil, ltx.Header{}, err
		}
		if n := len(blobs); n > 0 && hdr.PreApplyChecksum != blobs[n-1].trailer.PostApplyChecksum {
			return nil, ltx.Header{}, fmt.Errorf("checksum chain broken at txid %s", hdr.MinTXID)
		}
		blobs = append(blobs, ltxBlob{hdr: hdr, trailer: trailer, data: data})
	}
	data, err := merge(ctx, blobs)
	return data, blobs[len(blobs)-1].hdr, err
}
