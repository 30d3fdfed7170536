package litefs

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// ltxGuard sits between an LTX stream and the ltx module's decoder and
// refuses a page block size out of range before the decoder sees it: ltx
// v0.5.3 allocates the block's declared size (up to 4 GiB) before reading
// it, so a few bytes claiming a huge block cost gigabytes (found by
// FuzzApplyLTX). It follows the layout only up to the end-of-pages header:
// the file header (page size), then per page a header, a block size of
// 1..lz4.CompressBlockBound(page size) and the block. Pages in the old
// LZ4-frame format (flags without PageHeaderFlagSize) are refused, as in
// decodeSnapshotLTX: ltx v0.5.3 never writes them. Everything else is left
// to the decoder.
type ltxGuard struct {
	r     io.Reader
	off   int64
	field [ltx.HeaderSize]byte // the field being read: file header, page header, block size
	have  int                  // bytes of field read so far
	want  int                  // size of the field being read; 0 while skipping a block
	skip  int64                // block bytes left
	bound int                  // largest block for the page size
	done  bool                 // past the end-of-pages header
	err   error
}

// newLTXGuard returns a guard reading the LTX stream r.
func newLTXGuard(r io.Reader) *ltxGuard { return &ltxGuard{r: r, want: ltx.HeaderSize} }

// Read implements io.Reader. On a violation it returns the bytes before the
// offending field's last byte, then the error.
func (g *ltxGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if g.done {
		return n, err
	}
	for i := 0; i < n; {
		if g.want == 0 {
			k := int(min(g.skip, int64(n-i)))
			g.skip -= int64(k)
			i += k
			if g.skip == 0 {
				g.want, g.have = ltx.PageHeaderSize, 0
			}
			continue
		}
		g.field[g.have] = p[i]
		g.have++
		if g.have < g.want {
			i++
			continue
		}
		if g.err = g.fieldDone(); g.err != nil {
			g.err = fmt.Errorf("ltx at offset %d: %w", g.off+int64(i), g.err)
			g.off += int64(i)
			return i, g.err
		}
		i++
		if g.done {
			break
		}
	}
	g.off += int64(n)
	return n, err
}

// fieldDone checks the field just read and sets up the next one.
func (g *ltxGuard) fieldDone() error {
	f := g.field[:g.want]
	g.have = 0
	switch g.want {
	case ltx.HeaderSize:
		var hdr ltx.Header
		if err := hdr.UnmarshalBinary(f); err != nil {
			return fmt.Errorf("header: %w", err)
		} else if !ltx.IsValidPageSize(hdr.PageSize) {
			return fmt.Errorf("header: invalid page size %d", hdr.PageSize)
		}
		g.bound, g.want = lz4.CompressBlockBound(int(hdr.PageSize)), ltx.PageHeaderSize
	case ltx.PageHeaderSize:
		pgno, flags := binary.BigEndian.Uint32(f), binary.BigEndian.Uint16(f[4:])
		switch {
		case pgno == 0 && flags == 0:
			g.done = true
		case flags != ltx.PageHeaderFlagSize:
			return fmt.Errorf("page %d: page header flags 0x%04x, want 0x%04x (block format)", pgno, flags, ltx.PageHeaderFlagSize)
		default:
			g.want = 4
		}
	case 4:
		size := binary.BigEndian.Uint32(f)
		if size == 0 || size > uint32(g.bound) {
			return fmt.Errorf("page block size %d out of range 1..%d", size, g.bound)
		}
		g.want, g.skip = 0, int64(size)
	}
	return nil
}
