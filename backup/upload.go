package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// ltxBlob is one local LTX file read into memory, with its ends decoded.
type ltxBlob struct {
	hdr     ltx.Header
	trailer ltx.Trailer
	data    []byte
}

// uploadNext uploads the next batch after remote: the local LTX files from
// remote.TXID+1 up to upTo, merged into one level-0 file, or a snapshot when the
// bucket is empty or the local history no longer reaches back to it.
func (r *Replicator) uploadNext(ctx context.Context, db *litefs.DB, st *dbState, remote ltx.Pos, upTo ltx.TXID) error {
	if remote.TXID == 0 {
		return r.uploadSnapshot(ctx, db, st)
	}
	blobs, err := collect(db, remote, upTo)
	if err != nil {
		return err
	}
	if len(blobs) == 0 || blobs[0].hdr.IsSnapshot() {
		r.log.Info("local history does not reach the bucket's head; uploading a snapshot", "db", db.Name(), "bucket_txid", remote.TXID)
		return r.uploadSnapshot(ctx, db, st)
	}
	data, err := merge(ctx, blobs)
	if err != nil {
		return fmt.Errorf("merge ltx files of %s: %w", db.Name(), err)
	}
	first, last := blobs[0], blobs[len(blobs)-1]
	ts := time.UnixMilli(last.hdr.Timestamp)
	if err := r.client.PutLTX(ctx, db.Name(), 0, first.hdr.MinTXID, last.hdr.MaxTXID, ts, data); err != nil {
		return err
	}
	st.uploaded(ltx.Pos{TXID: last.hdr.MaxTXID, PostApplyChecksum: last.trailer.PostApplyChecksum}, false)
	return nil
}

// collect reads the local LTX files that continue remote, checking that
// each one's pre-apply checksum is the previous one's post-apply checksum,
// up to txid upTo or maxBatchBytes. It stops before a snapshot file unless
// it is the first. A first file that does not continue remote is a
// divergence (RefusedError).
func collect(db *litefs.DB, remote ltx.Pos, upTo ltx.TXID) ([]ltxBlob, error) {
	var blobs []ltxBlob
	var size int
	prev := remote
	for prev.TXID < upTo && size < maxBatchBytes {
		b, err := readLocal(db, prev.TXID+1)
		if errors.Is(err, litefs.ErrLTXNotFound) {
			break
		} else if err != nil {
			return nil, err
		}
		if b.hdr.IsSnapshot() {
			if len(blobs) == 0 {
				blobs = append(blobs, b)
			}
			break
		}
		if b.hdr.MinTXID != prev.TXID+1 || b.hdr.PreApplyChecksum != prev.PostApplyChecksum {
			if len(blobs) == 0 {
				return nil, &RefusedError{DB: db.Name(), Reason: fmt.Sprintf("diverged at txid %s: bucket checksum %s, this node's history %s",
					prev.TXID, prev.PostApplyChecksum, b.hdr.PreApplyChecksum)}
			}
			return nil, fmt.Errorf("local ltx history of %s breaks at txid %s", db.Name(), prev.TXID)
		}
		blobs = append(blobs, b)
		size += len(b.data)
		prev = ltx.Pos{TXID: b.hdr.MaxTXID, PostApplyChecksum: b.trailer.PostApplyChecksum}
	}
	return blobs, nil
}

// readLocal reads the local LTX file that starts at txid.
func readLocal(db *litefs.DB, txid ltx.TXID) (ltxBlob, error) {
	f, err := db.OpenLTX(txid)
	if err != nil {
		return ltxBlob{}, err
	}
	defer f.Close()
	data := make([]byte, f.Size())
	if _, err := f.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		return ltxBlob{}, fmt.Errorf("read ltx %s of %s: %w", txid, db.Name(), err)
	}
	hdr, trailer, err := readEnds(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return ltxBlob{}, fmt.Errorf("ltx %s of %s: %w", txid, db.Name(), err)
	}
	return ltxBlob{hdr: hdr, trailer: trailer, data: data}, nil
}

// merge returns the single file of blobs, or the ltx Compactor's merge of
// several consecutive ones into one file spanning them all.
func merge(ctx context.Context, blobs []ltxBlob) ([]byte, error) {
	if len(blobs) == 1 {
		return blobs[0].data, nil
	}
	rdrs := make([]io.Reader, len(blobs))
	for i, b := range blobs {
		rdrs[i] = bytes.NewReader(b.data)
	}
	var buf bytes.Buffer
	c, err := ltx.NewCompactor(&buf, rdrs)
	if err != nil {
		return nil, err
	}
	if err := c.Compact(ctx); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// uploadSnapshot writes db's committed state as a snapshot (level 9,
// 1-<TXID>) through a temporary file, so a large database is not held in
// memory.
func (r *Replicator) uploadSnapshot(ctx context.Context, db *litefs.DB, st *dbState) error {
	f, err := os.CreateTemp("", "litefs-backup-snapshot-*.ltx")
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", db.Name(), err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	pos, err := db.WriteSnapshot(ctx, f)
	if errors.Is(err, litefs.ErrEmptyDatabase) {
		return nil
	} else if err != nil {
		return fmt.Errorf("snapshot of %s: %w", db.Name(), err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("snapshot of %s: %w", db.Name(), err)
	}
	if err := syncFS(db.LTXDir()); err != nil { // its state is durable here first
		return fmt.Errorf("snapshot of %s: %w", db.Name(), err)
	}
	if err := r.client.PutLTXFrom(ctx, db.Name(), SnapshotLevel, 1, pos.TXID, time.Now(), io.NewSectionReader(f, 0, size), size); err != nil {
		return err
	}
	r.log.Info("backup snapshot uploaded", "db", db.Name(), "txid", pos.TXID, "bytes", size)
	st.uploaded(pos, true)
	return nil
}

// readEnds decodes the header and trailer of an LTX file of size bytes.
func readEnds(r io.ReaderAt, size int64) (ltx.Header, ltx.Trailer, error) {
	var hdr ltx.Header
	var trailer ltx.Trailer
	if size < ltx.HeaderSize+ltx.TrailerSize {
		return hdr, trailer, fmt.Errorf("ltx file is %d bytes: too short", size)
	}
	b := make([]byte, ltx.HeaderSize)
	if _, err := r.ReadAt(b, 0); err != nil {
		return hdr, trailer, err
	}
	if err := hdr.UnmarshalBinary(b); err != nil {
		return hdr, trailer, fmt.Errorf("ltx header: %w", err)
	}
	if _, err := r.ReadAt(b[:ltx.TrailerSize], size-ltx.TrailerSize); err != nil {
		return hdr, trailer, err
	}
	if err := trailer.UnmarshalBinary(b[:ltx.TrailerSize]); err != nil {
		return hdr, trailer, fmt.Errorf("ltx trailer: %w", err)
	}
	return hdr, trailer, nil
}
