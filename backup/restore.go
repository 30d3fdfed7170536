package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/superfly/ltx"
)

// RestoreOptions choose the point to restore and report progress.
type RestoreOptions struct {
	TXID      ltx.TXID  // 0: the newest point (or Timestamp's)
	Timestamp time.Time // zero: no time bound
	// Progress, if set, is called after each file is downloaded.
	Progress func(done, total int, file FileInfo)
}

// Restore writes database name, as the backup holds it at the chosen point,
// to path: the plan's files are downloaded next to path, their checksum
// chain checked (each file's pre-apply checksum is the previous one's
// post-apply checksum), merged and decoded into a temporary file whose
// checksum must be the last file's post-apply checksum; only then is it
// renamed to path. path must not exist. It returns the restored position.
func (c *Client) Restore(ctx context.Context, name, path string, opts RestoreOptions) (ltx.Pos, error) {
	if _, err := os.Lstat(path); err == nil {
		return ltx.Pos{}, fmt.Errorf("restore %q: %s already exists", name, path)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".litefs-restore-")
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("restore %q: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	files, err := c.fetchPlan(ctx, name, tmp, opts)
	if err != nil {
		return ltx.Pos{}, err
	}
	out := filepath.Join(tmp, "db")
	pos, err := decode(ctx, files, out)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("restore %q: %w", name, err)
	}
	if err := os.Rename(out, path); err != nil {
		return ltx.Pos{}, fmt.Errorf("restore %q: %w", name, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return ltx.Pos{}, fmt.Errorf("restore %q: %w", name, err)
	}
	return pos, nil
}

// RestoreSnapshot writes database name, as the backup holds it at the
// chosen point, to w as one snapshot LTX file (the plan's files, chain
// checked, merged), downloading through the temporary directory tmpDir.
// A store applies it with DB.ApplyLTX and lands at the backup's position.
func (c *Client) RestoreSnapshot(ctx context.Context, name, tmpDir string, w io.Writer, opts RestoreOptions) (ltx.Pos, error) {
	tmp, err := os.MkdirTemp(tmpDir, ".litefs-restore-")
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("restore %q: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	files, err := c.fetchPlan(ctx, name, tmp, opts)
	if err != nil {
		return ltx.Pos{}, err
	}
	if err := mergeFiles(ctx, files, w); err != nil {
		return ltx.Pos{}, fmt.Errorf("restore %q: %w", name, err)
	}
	last := files[len(files)-1]
	return ltx.Pos{TXID: last.hdr.MaxTXID, PostApplyChecksum: last.trailer.PostApplyChecksum}, nil
}

// fetchPlan plans the restore and downloads its files into dir.
func (c *Client) fetchPlan(ctx context.Context, name, dir string, opts RestoreOptions) ([]localFile, error) {
	plan, err := c.Plan(ctx, name, opts.TXID, opts.Timestamp)
	if err != nil {
		return nil, err
	}
	files, err := c.download(ctx, name, dir, plan, opts)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("backup of %q: %w", name, ErrNoBackup)
	}
	return files, nil
}

// localFile is a downloaded LTX file with its decoded ends.
type localFile struct {
	path    string
	hdr     ltx.Header
	trailer ltx.Trailer
}

// download fetches the plan's files into dir, checking the chain as it
// goes; with a timestamp bound it stops before the first file whose header
// timestamp is after it.
func (c *Client) download(ctx context.Context, name, dir string, plan []FileInfo, opts RestoreOptions) ([]localFile, error) {
	var files []localFile
	for i, info := range plan {
		f, err := c.fetch(ctx, name, dir, info)
		if err != nil {
			return nil, err
		}
		if !opts.Timestamp.IsZero() && info.Level != SnapshotLevel && time.UnixMilli(f.hdr.Timestamp).After(opts.Timestamp) {
			break
		}
		if len(files) > 0 {
			prev := files[len(files)-1]
			if f.hdr.MinTXID != prev.hdr.MaxTXID+1 || f.hdr.PreApplyChecksum != prev.trailer.PostApplyChecksum {
				return nil, fmt.Errorf("backup of %q: checksum chain broken at txid %s: %s ends with %s, %s expects %s",
					name, f.hdr.MinTXID, ltx.FormatFilename(prev.hdr.MinTXID, prev.hdr.MaxTXID), prev.trailer.PostApplyChecksum,
					ltx.FormatFilename(f.hdr.MinTXID, f.hdr.MaxTXID), f.hdr.PreApplyChecksum)
			}
		} else if !f.hdr.IsSnapshot() {
			return nil, fmt.Errorf("backup of %q: first file %s is not a snapshot", name, ltx.FormatFilename(f.hdr.MinTXID, f.hdr.MaxTXID))
		}
		files = append(files, f)
		if opts.Progress != nil {
			opts.Progress(i+1, len(plan), info)
		}
	}
	return files, nil
}

// fetch downloads one LTX object into dir and decodes its ends, checking
// that they match its name.
func (c *Client) fetch(ctx context.Context, name, dir string, info FileInfo) (localFile, error) {
	rc, err := c.GetLTX(ctx, name, info)
	if err != nil {
		return localFile{}, err
	}
	defer rc.Close()
	p := filepath.Join(dir, fmt.Sprintf("%04x-%s", info.Level, ltx.FormatFilename(info.MinTXID, info.MaxTXID)))
	f, err := os.Create(p)
	if err != nil {
		return localFile{}, fmt.Errorf("download %s: %w", p, err)
	}
	defer f.Close()
	n, err := io.Copy(f, rc)
	if err != nil {
		return localFile{}, fmt.Errorf("download %s: %w", filepath.Base(p), err)
	}
	hdr, trailer, err := readEnds(f, n)
	if err != nil {
		return localFile{}, fmt.Errorf("download %s: %w", filepath.Base(p), err)
	}
	if hdr.MinTXID != info.MinTXID || hdr.MaxTXID != info.MaxTXID {
		return localFile{}, fmt.Errorf("download %s: header says %s-%s", filepath.Base(p), hdr.MinTXID, hdr.MaxTXID)
	}
	return localFile{path: p, hdr: hdr, trailer: trailer}, nil
}

// ioBufferSize is the buffer between a restore's stages. The ltx encoder,
// decoder and checksum read and write a page (or a few bytes) at a time;
// unbuffered, one system call per page was most of a restore's time.
const ioBufferSize = 1 << 20

// decode writes files (a snapshot and the files that continue it) as a
// database file at out: the snapshot decoded, then each file's pages
// written over it (applyLTX). It syncs the file and checks its checksum
// against the last file's post-apply checksum.
func decode(ctx context.Context, files []localFile, out string) (ltx.Pos, error) {
	f, err := os.OpenFile(out, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return ltx.Pos{}, err
	}
	defer f.Close()
	snap, err := os.Open(files[0].path)
	if err != nil {
		return ltx.Pos{}, err
	}
	defer snap.Close()
	if err := writeDatabase(snap, f); err != nil {
		return ltx.Pos{}, err
	}
	for _, lf := range files[1:] {
		if err := ctx.Err(); err != nil {
			return ltx.Pos{}, err
		}
		if err := applyLTX(lf.path, f, f.Truncate, files[0].hdr.PageSize); err != nil {
			return ltx.Pos{}, err
		}
	}
	if err := f.Sync(); err != nil {
		return ltx.Pos{}, err
	}
	last := files[len(files)-1]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return ltx.Pos{}, err
	}
	sum, err := ltx.ChecksumReader(bufio.NewReaderSize(f, ioBufferSize), int(last.hdr.PageSize))
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("checksum restored database: %w", err)
	}
	if sum != last.trailer.PostApplyChecksum {
		return ltx.Pos{}, fmt.Errorf("restored database checksum %s, the backup says %s at txid %s",
			sum, last.trailer.PostApplyChecksum, last.hdr.MaxTXID)
	}
	return ltx.Pos{TXID: last.hdr.MaxTXID, PostApplyChecksum: sum}, nil
}

// writeDatabase decodes the snapshot LTX file read from r into a database
// file written to w, through buffers on both sides.
func writeDatabase(r io.Reader, w io.Writer) error {
	bw := bufio.NewWriterSize(w, ioBufferSize)
	if err := ltx.NewDecoder(bufio.NewReaderSize(r, ioBufferSize)).DecodeDatabaseTo(bw); err != nil {
		return fmt.Errorf("decode database: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write database: %w", err)
	}
	return nil
}

// mergeFiles merges files, a snapshot and the files that continue it, into
// one snapshot LTX file written to w.
func mergeFiles(ctx context.Context, files []localFile, w io.Writer) error {
	rdrs := make([]io.Reader, len(files))
	for i, lf := range files {
		f, err := os.Open(lf.path)
		if err != nil {
			return err
		}
		defer f.Close()
		rdrs[i] = bufio.NewReaderSize(f, ioBufferSize)
	}
	bw := bufio.NewWriterSize(w, ioBufferSize)
	c, err := ltx.NewCompactor(bw, rdrs)
	if err != nil {
		return err
	}
	if err := c.Compact(ctx); err != nil {
		return err
	}
	return bw.Flush()
}

// syncDir fsyncs a directory so a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}
