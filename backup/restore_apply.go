package backup

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/superfly/ltx"
)

// applyLTX writes the pages of the LTX file at path, one that continues the
// database file f, into f at their offsets (contiguous pages in one write)
// and sets f's size to the file's commit size. The decoder checks the
// file's own checksum when it is closed; the caller checks the database's.
//
// A restore applies the files after its snapshot this way rather than
// merging them first with the ltx Compactor: the merge decoded, re-encoded
// (LZ4) and checksummed every page once more, and took about half of a
// restore's time.
func applyLTX(path string, f io.WriterAt, truncate func(size int64) error, pageSize uint32) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	name := filepath.Base(path)
	dec := ltx.NewDecoder(bufio.NewReaderSize(in, ioBufferSize))
	if err := dec.DecodeHeader(); err != nil {
		return fmt.Errorf("%s: decode header: %w", name, err)
	}
	hdr := dec.Header()
	if hdr.PageSize != pageSize {
		return fmt.Errorf("%s: page size %d, the snapshot's is %d", name, hdr.PageSize, pageSize)
	}
	run := pageRun{w: f, pageSize: int64(pageSize)}
	data := make([]byte, pageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("%s: decode page: %w", name, err)
		}
		if ph.Pgno == 0 || ph.Pgno > hdr.Commit {
			return fmt.Errorf("%s: page %d outside its commit size of %d pages", name, ph.Pgno, hdr.Commit)
		}
		if err := run.add(ph.Pgno, data); err != nil {
			return fmt.Errorf("%s: write page %d: %w", name, ph.Pgno, err)
		}
	}
	if err := run.flush(); err != nil {
		return fmt.Errorf("%s: write pages: %w", name, err)
	}
	if err := dec.Close(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return truncate(int64(hdr.Commit) * int64(pageSize))
}

// pageRun gathers contiguous pages, up to ioBufferSize bytes, into one
// positioned write.
type pageRun struct {
	w        io.WriterAt
	pageSize int64
	first    uint32 // page number of buf's first page
	buf      []byte
}

// add appends page pgno to the run, writing the run first if pgno does not
// continue it or it is full.
func (r *pageRun) add(pgno uint32, data []byte) error {
	next := r.first + uint32(int64(len(r.buf))/r.pageSize)
	if len(r.buf) > 0 && (pgno != next || len(r.buf)+len(data) > ioBufferSize) {
		if err := r.flush(); err != nil {
			return err
		}
	}
	if len(r.buf) == 0 {
		r.first = pgno
	}
	r.buf = append(r.buf, data...)
	return nil
}

// flush writes the run at its pages' offset and empties it.
func (r *pageRun) flush() error {
	if len(r.buf) == 0 {
		return nil
	}
	_, err := r.w.WriteAt(r.buf, int64(r.first-1)*r.pageSize)
	r.buf = r.buf[:0]
	return err
}
