package litefs

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/litefs/litefs/internal/crc64iso"
	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

const (
	snapDecBufSize  = 256 << 10 // read buffer; holds the largest LZ4 block, of a 64 KiB page
	snapDecFrameHdr = ltx.PageHeaderSize + 4
)

// snapDecoder is the state of decodeSnapshotLTX: file checksum so far, CRC-64
// of the frame sizes (as big-endian uint32s) for the index to match, offsets
// of the next byte and of the end-of-pages header, largest valid frame.
type snapDecoder struct {
	br                      *bufio.Reader
	hdr                     ltx.Header
	crc, sizes              uint64
	off, pagesEnd, maxFrame int64
}

// decodeSnapshotLTX decodes and verifies a snapshot LTX file (ltx v0.5.3
// layout, see snapshotEncoder) from r, calling fn for each page in order with
// a buffer reused between calls, and returns the header and trailer.
//
// It verifies the header (Validate, MinTXID 1); pages 1..Commit in order
// without the lock page; frame flags (only PageHeaderFlagSize: the old
// LZ4-frame format is refused); block sizes (1..CompressBlockBound); that
// each block decompresses to exactly PageSize bytes; the end-of-pages header;
// the page index (same page numbers, offsets and frame sizes, end marker,
// size field equal to its length); the trailer; that r ends after it; and the
// file checksum. Index offsets are checked exactly; so that memory stays flat,
// index sizes are checked through the offsets (their sum is exact) and a
// CRC-64 of the size sequence, which catches any single wrong size. Page
// checksums and the post-apply checksum are left to the caller.
//
// Errors start with "snapshot ltx:" and name the part at fault; a stream cut
// short gives an error wrapping io.ErrUnexpectedEOF; fn's errors are wrapped.
func decodeSnapshotLTX(r io.Reader, fn func(hdr ltx.Header, pgno uint32, data []byte) error) (ltx.Header, ltx.Trailer, error) {
	d := &snapDecoder{br: bufio.NewReaderSize(r, snapDecBufSize)}
	t, err := ltx.Trailer{}, d.decodeHeader()
	if err != nil {
		err = fmt.Errorf("header: %w", err)
	} else if err = d.decodePages(fn); err == nil { // decodePages names the page
		if err = d.decodeIndex(); err != nil {
			err = fmt.Errorf("page index: %w", err)
		} else if t, err = d.decodeTrailer(); err != nil {
			err = fmt.Errorf("trailer: %w", err)
		}
	}
	if err != nil {
		return ltx.Header{}, ltx.Trailer{}, fmt.Errorf("snapshot ltx: %w", err)
	}
	return d.hdr, t, nil
}

// take consumes and returns the next n bytes, valid until br is next read.
func (d *snapDecoder) take(n int) ([]byte, error) {
	b, err := d.br.Peek(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %d bytes at offset %d: %w", n, d.off, err)
	}
	_, _ = d.br.Discard(n) // cannot fail: n bytes are buffered
	d.off += int64(n)
	return b, nil
}

// hashed is take, adding the bytes to the file checksum.
func (d *snapDecoder) hashed(n int) ([]byte, error) {
	b, err := d.take(n)
	if err == nil {
		d.crc = crc64iso.Update(d.crc, b)
	}
	return b, err
}

// decodeHeader reads, checks and hashes the file header.
func (d *snapDecoder) decodeHeader() error {
	b, err := d.hashed(ltx.HeaderSize)
	if err != nil {
		return err
	} else if err := d.hdr.UnmarshalBinary(b); err != nil {
		return fmt.Errorf("magic %q: %w", b[:4], err)
	} else if err := d.hdr.Validate(); err != nil {
		return fmt.Errorf("invalid: %w", err)
	} else if !d.hdr.IsSnapshot() {
		return fmt.Errorf("min txid is %d, want 1 for a snapshot", d.hdr.MinTXID)
	}
	return nil
}

// decodePages reads the page frames and the end-of-pages header, calling fn
// for each page.
func (d *snapDecoder) decodePages(fn func(ltx.Header, uint32, []byte) error) error {
	ps, commit, lock := int(d.hdr.PageSize), d.hdr.Commit, ltx.LockPgno(d.hdr.PageSize)
	bound := lz4.CompressBlockBound(ps)
	d.maxFrame = int64(snapDecFrameHdr + bound)
	page := make([]byte, ps)
	var frameSize [4]byte
	for n := uint64(1); ; n++ { // uint64, so that Commit 0xFFFFFFFF ends
		if n == uint64(lock) {
			n++
		}
		next := uint32(n)
		start := d.off
		b, err := d.hashed(ltx.PageHeaderSize)
		if err != nil && n > uint64(commit) {
			return fmt.Errorf("end-of-pages header: %w", err)
		} else if err != nil {
			return fmt.Errorf("page %d: page header: %w", next, err)
		}
		pgno, flags := binary.BigEndian.Uint32(b), binary.BigEndian.Uint16(b[4:])
		switch {
		case pgno == 0 && flags == 0 && n <= uint64(commit):
			return fmt.Errorf("page %d: end-of-pages header, but commit is %d", next, commit)
		case pgno == 0 && flags == 0:
			d.pagesEnd = start
			return nil
		case n > uint64(commit):
			return fmt.Errorf("end-of-pages header: found header of page %d flags 0x%04x after commit %d", pgno, flags, commit)
		case pgno != next:
			return fmt.Errorf("page %d: page header has page number %d", next, pgno)
		case flags == 0:
			return fmt.Errorf("page %d: old LZ4-frame page format (flags 0x0000) not supported", next)
		case flags != ltx.PageHeaderFlagSize:
			return fmt.Errorf("page %d: invalid page header flags 0x%04x", next, flags)
		}

		if b, err = d.hashed(4); err != nil {
			return fmt.Errorf("page %d: block size: %w", next, err)
		}
		size := binary.BigEndian.Uint32(b)
		if size == 0 || size > uint32(bound) {
			return fmt.Errorf("page %d: block size %d out of range 1..%d", next, size, bound)
		}
		if b, err = d.take(int(size)); err != nil {
			return fmt.Errorf("page %d: block: %w", next, err)
		}
		if got, err := lz4.UncompressBlock(b, page); err != nil {
			return fmt.Errorf("page %d: decompress %d-byte block: %w", next, size, err)
		} else if got != ps {
			return fmt.Errorf("page %d: block decompresses to %d bytes, want %d", next, got, ps)
		}
		d.crc = crc64iso.Update(d.crc, page)
		binary.BigEndian.PutUint32(frameSize[:], uint32(d.off-start))
		d.sizes = crc64iso.Update(d.sizes, frameSize[:])
		if err := fn(d.hdr, next, page); err != nil {
			return fmt.Errorf("page %d: %w", next, err)
		}
	}
}

// decodeIndex reads and checks the page index: a record (uvarint page number,
// offset and frame size) per page, the end marker and the index size.
func (d *snapDecoder) decodeIndex() error {
	commit, lock := uint64(d.hdr.Commit), uint64(ltx.LockPgno(d.hdr.PageSize))
	start, off := d.off, int64(ltx.HeaderSize)
	sizes, frameSize := uint64(0), [4]byte{}
	for n := uint64(1); ; n++ {
		if n == lock {
			n++
		}
		b, peekErr := d.br.Peek(3 * binary.MaxVarintLen64) // short near EOF
		if peekErr != nil && !errors.Is(peekErr, io.EOF) {
			return fmt.Errorf("entry for page %d: read at offset %d: %w", n, d.off, peekErr)
		}
		pgno, k, err := snapDecUvarint(b, 0)
		if err != nil {
			return fmt.Errorf("entry for page %d: page number: %w", n, err)
		} else if pgno == 0 && n <= commit {
			return fmt.Errorf("end marker in place of the entry for page %d of %d", n, commit)
		} else if pgno == 0 {
			if off != d.pagesEnd {
				return fmt.Errorf("entries cover frames up to offset %d, pages end at %d", off, d.pagesEnd)
			} else if sizes != d.sizes {
				return errors.New("frame sizes differ from the frames read (CRC-64 of the sizes differs)")
			}
			_, _ = d.hashed(k) // buffered
			break
		} else if n > commit {
			return fmt.Errorf("entry for page %d after commit %d", pgno, commit)
		} else if pgno != n {
			return fmt.Errorf("entry for page %d in place of page %d", pgno, n)
		}
		offset, k, err := snapDecUvarint(b, k)
		if err != nil {
			return fmt.Errorf("page %d: offset: %w", n, err)
		} else if offset != uint64(off) {
			return fmt.Errorf("page %d: offset %d, want %d (header and earlier frames)", n, offset, off)
		}
		size, k, err := snapDecUvarint(b, k)
		if err != nil {
			return fmt.Errorf("page %d: size: %w", n, err)
		} else if size <= snapDecFrameHdr || size > uint64(min(d.maxFrame, d.pagesEnd-off)) {
			return fmt.Errorf("page %d: frame size %d out of range", n, size)
		}
		binary.BigEndian.PutUint32(frameSize[:], uint32(size))
		sizes = crc64iso.Update(sizes, frameSize[:])
		off += int64(size)
		_, _ = d.hashed(k) // buffered
	}

	want := d.off - start
	b, err := d.hashed(8)
	if err != nil {
		return fmt.Errorf("index size: %w", err)
	} else if got := binary.BigEndian.Uint64(b); got != uint64(want) {
		return fmt.Errorf("index size field is %d, index is %d bytes", got, want)
	}
	return nil
}

// snapDecUvarint decodes the uvarint at b[k:] and returns it and the offset
// after it. b is a peeked buffer, short only at EOF.
func snapDecUvarint(b []byte, k int) (uint64, int, error) {
	v, n := binary.Uvarint(b[k:])
	if n < 0 {
		return 0, 0, errors.New("uvarint overflows 64 bits")
	} else if n == 0 {
		return 0, 0, io.ErrUnexpectedEOF
	}
	return v, k + n, nil
}

// decodeTrailer reads and checks the trailer and file checksum, then EOF.
func (d *snapDecoder) decodeTrailer() (ltx.Trailer, error) {
	var t ltx.Trailer
	b, err := d.take(ltx.TrailerSize)
	if err != nil {
		return t, err
	}
	d.crc = crc64iso.Update(d.crc, b[:ltx.TrailerChecksumOffset])
	_ = t.UnmarshalBinary(b) // cannot fail: b is TrailerSize bytes
	if err := t.Validate(d.hdr); err != nil {
		return t, fmt.Errorf("invalid: %w", err)
	} else if got := ltx.ChecksumFlag | ltx.Checksum(d.crc); got != t.FileChecksum {
		return t, fmt.Errorf("file checksum %s, computed %s: %w", t.FileChecksum, got, ltx.ErrChecksumMismatch)
	}
	if _, err := d.br.ReadByte(); err == nil {
		return t, fmt.Errorf("unexpected data after trailer at offset %d", d.off)
	} else if !errors.Is(err, io.EOF) {
		return t, fmt.Errorf("read after trailer: %w", err)
	}
	return t, nil
}
