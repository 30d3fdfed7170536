package litefs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/superfly/ltx"
)

// Small LTX files (one ordinary transaction, as a replica receives them one
// after another at the primary's full rate) are received into memory, not
// into a temporary file: a temporary file, its rename into the history and
// a second decode to write its pages into the database file were about a
// third of a busy replica's CPU. Applying one writes it straight under its
// final name, like a primary's own commits (see writeFileDirect): a file cut
// short by a crash can only be the newest, and nothing of it has reached the
// database file yet, since its pages are written only after it.
const (
	// memSpoolMax is the largest LTX file kept in memory until applied; a
	// larger one goes to a temporary file as it arrives.
	memSpoolMax = 1 << 20
	// memPagesMax bounds the decoded pages kept from the receiving pass; a
	// file whose pages take more is decoded again (from memory) to apply.
	memPagesMax = 4 << 20
)

// memSpoolBufs reuses the buffers of files received into memory.
var memSpoolBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// memLTX is an LTX file received into memory.
type memLTX struct {
	buf   *bytes.Buffer // the whole file, from memSpoolBufs
	pages []byte        // decoded pages in the order of incomingLTX.pages, or nil
}

// spoolInMemory reads r to its end if it holds at most memSpoolMax bytes and
// decodes it from memory. When r holds more, it returns no file and a reader
// that yields everything r held, from the start, for the file-based spool.
func (db *DB) spoolInMemory(r io.Reader) (*incomingLTX, io.Reader, error) {
	buf := memSpoolBufs.Get().(*bytes.Buffer)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r, memSpoolMax+1))
	if err != nil {
		memSpoolBufs.Put(buf)
		return nil, nil, fmt.Errorf("read ltx: %w", err)
	}
	if n > memSpoolMax {
		// The buffer stays with the returned reader (not pooled).
		return nil, io.MultiReader(bytes.NewReader(buf.Bytes()), r), nil
	}
	in := &incomingLTX{mem: &memLTX{buf: buf}}
	keep := true
	in.hdr, in.trailer, err = decodeLTX(bytes.NewReader(buf.Bytes()), func(h ltx.Header, pgno uint32, data []byte) error {
		in.pages = append(in.pages, pageChange{pgno: pgno, sum: PageChecksum(pgno, data)})
		if keep = keep && len(in.mem.pages)+len(data) <= memPagesMax; keep {
			in.mem.pages = append(in.mem.pages, data...)
		} else {
			in.mem.pages = nil
		}
		return nil
	})
	if err == nil && in.hdr.IsSnapshot() {
		err = fmt.Errorf("unexpected snapshot") // spoolLTX sends those to a file
	}
	if err != nil {
		in.remove()
		return nil, nil, err
	}
	return in, nil, nil
}

// store writes the file under path, its place in the history.
func (m *memLTX) store(path string) error {
	return writeFile(path, m.buf.Bytes(), false)
}

// writePages writes the file's pages (hdr's page size, in the order of
// pages) into the database file f and sets f's size to hdr's commit size.
func (m *memLTX) writePages(f *os.File, hdr ltx.Header, pages []pageChange) error {
	ps := int(hdr.PageSize)
	write := func(pgno uint32, data []byte) error {
		if _, err := f.WriteAt(data, int64(pgno-1)*int64(ps)); err != nil {
			return fmt.Errorf("write page %d: %w", pgno, err)
		}
		return nil
	}
	if m.pages != nil || len(pages) == 0 {
		for i, p := range pages {
			if err := write(p.pgno, m.pages[i*ps:(i+1)*ps]); err != nil {
				return err
			}
		}
	} else if _, _, err := decodeLTX(bytes.NewReader(m.buf.Bytes()), func(_ ltx.Header, pgno uint32, data []byte) error {
		return write(pgno, data)
	}); err != nil {
		return err
	}
	if err := f.Truncate(int64(hdr.Commit) * int64(ps)); err != nil {
		return fmt.Errorf("truncate database: %w", err)
	}
	return nil
}

// release gives the buffer back; m is unusable afterwards.
func (m *memLTX) release() {
	if m.buf != nil {
		memSpoolBufs.Put(m.buf)
		m.buf, m.pages = nil, nil
	}
}
