package litefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// WALHeaderSize is the size in bytes of the header at the start of a WAL file.
const WALHeaderSize = 32

// WALFrameHeaderSize is the size in bytes of the header in front of every
// page image (frame) in a WAL file.
const WALFrameHeaderSize = 24

// WAL header constants (see https://www.sqlite.org/fileformat2.html#walformat).
const (
	walMagicLE    = 0x377f0682 // checksum words are little-endian
	walMagicBE    = 0x377f0683 // checksum words are big-endian
	walVersion    = 3007000    // the only WAL format version
	walMinPage    = 512
	walMaxPage    = 65536
	walSumsOffset = 24 // offset of the header checksum, which covers the bytes before it
)

// WALHeader is the decoded 32-byte header of a WAL file.
type WALHeader struct {
	BigEndianChecksum    bool   // magic 0x377f0683 (true) or 0x377f0682 (false)
	Version              uint32 // file format version, always 3007000
	PageSize             uint32 // database page size in bytes
	Seq                  uint32 // checkpoint sequence
	Salt1, Salt2         uint32 // copied into every valid frame header
	Checksum1, Checksum2 uint32 // checksum of the first 24 header bytes
}

// ParseWALHeader decodes and validates b, which must hold at least the 32
// header bytes: the magic number, the format version 3007000, a page size that
// is a power of two from 512 to 65536, and the header checksum over the first
// 24 bytes. The page size is stored as a plain 32-bit value, so 65536 is
// stored as 65536; SQLite treats any other value (including 1, the database
// header's encoding of 65536) as an invalid WAL, and so does ParseWALHeader.
// The error says what was wrong.
func ParseWALHeader(b []byte) (WALHeader, error) {
	if len(b) < WALHeaderSize {
		return WALHeader{}, fmt.Errorf("wal header: %d bytes, need %d", len(b), WALHeaderSize)
	}
	var h WALHeader
	switch magic := binary.BigEndian.Uint32(b[0:]); magic {
	case walMagicLE:
	case walMagicBE:
		h.BigEndianChecksum = true
	default:
		return WALHeader{}, fmt.Errorf("wal header: bad magic %#08x", magic)
	}
	h.Version = binary.BigEndian.Uint32(b[4:])
	h.PageSize = binary.BigEndian.Uint32(b[8:])
	h.Seq = binary.BigEndian.Uint32(b[12:])
	h.Salt1 = binary.BigEndian.Uint32(b[16:])
	h.Salt2 = binary.BigEndian.Uint32(b[20:])
	h.Checksum1 = binary.BigEndian.Uint32(b[24:])
	h.Checksum2 = binary.BigEndian.Uint32(b[28:])

	if h.Version != walVersion {
		return WALHeader{}, fmt.Errorf("wal header: unsupported version %d, want %d", h.Version, walVersion)
	}
	if h.PageSize < walMinPage || h.PageSize > walMaxPage || h.PageSize&(h.PageSize-1) != 0 {
		return WALHeader{}, fmt.Errorf("wal header: invalid page size %d", h.PageSize)
	}
	s1, s2 := walChecksum(h.BigEndianChecksum, b[:walSumsOffset], 0, 0)
	if s1 != h.Checksum1 || s2 != h.Checksum2 {
		return WALHeader{}, fmt.Errorf("wal header: checksum mismatch: header has %08x/%08x, computed %08x/%08x",
			h.Checksum1, h.Checksum2, s1, s2)
	}
	return h, nil
}

// walChecksum extends the running WAL checksum (s1, s2) over b, whose length
// must be a multiple of 8. Words are read big-endian when bigEndian is set and
// little-endian otherwise, as the WAL magic number says.
func walChecksum(bigEndian bool, b []byte, s1, s2 uint32) (uint32, uint32) {
	n := len(b) &^ 7
	if bigEndian {
		for i := 0; i < n; i += 8 {
			w := b[i : i+8 : i+8]
			s1 += binary.BigEndian.Uint32(w[0:4]) + s2
			s2 += binary.BigEndian.Uint32(w[4:8]) + s1
		}
		return s1, s2
	}
	for i := 0; i < n; i += 8 {
		w := b[i : i+8 : i+8]
		s1 += binary.LittleEndian.Uint32(w[0:4]) + s2
		s2 += binary.LittleEndian.Uint32(w[4:8]) + s1
	}
	return s1, s2
}

// WALCommit is one committed transaction found in a WAL.
type WALCommit struct {
	Offset int64            // file offset of the transaction's first frame header
	End    int64            // file offset just past its commit frame
	Commit uint32           // database size in pages after the commit (the commit frame's field)
	Pages  map[uint32]int64 // page number -> file offset of that page's data in the LAST frame for it within the transaction
}

// WALReader walks the committed transactions of a WAL in order. It reads the
// file with ReadAt only and reuses one frame buffer, so it is cheap to keep
// one per WAL and call Next again after the WAL has grown. A WALReader is not
// safe for concurrent use.
type WALReader struct {
	r      io.ReaderAt
	hdr    WALHeader
	off    int64  // offset of the first frame not yet returned
	s1, s2 uint32 // running checksum of the frame ending at off
	buf    []byte // one frame: header then page data

	// Progress through an uncommitted tail, kept so that the next Next
	// verifies only frames written since (a long rolled-back or still
	// running transaction would otherwise be re-read by every call).
	pend           map[uint32]int64
	pendOff        int64
	pendS1, pendS2 uint32
}

// NewWALReader starts at the first frame (offset 32) of a WAL whose header is
// hdr, as returned by ParseWALHeader; r reads the WAL file.
func NewWALReader(r io.ReaderAt, hdr WALHeader) *WALReader {
	return ResumeWALReader(r, hdr, WALHeaderSize, hdr.Checksum1, hdr.Checksum2)
}

// ResumeWALReader continues at frame offset off with running checksums s1,s2
// (the checksum values of the frame ending just before off, or the header
// checksums when off == 32). off and the checksums are normally the values of
// Offset and Checksums saved from an earlier reader over the same WAL.
func ResumeWALReader(r io.ReaderAt, hdr WALHeader, off int64, s1, s2 uint32) *WALReader {
	return &WALReader{r: r, hdr: hdr, off: off, s1: s1, s2: s2}
}

// Offset returns the file offset just past the last transaction returned by
// Next, which is where the next transaction's first frame starts.
func (r *WALReader) Offset() int64 { return r.off }

// Checksums returns the running checksums at Offset: those of the last commit
// frame returned by Next, or the starting values.
func (r *WALReader) Checksums() (s1, s2 uint32) { return r.s1, r.s2 }

// Next returns the next complete committed transaction. ok is false (with nil
// error) when the WAL has no further complete, valid commit: a frame whose
// salts differ from the header, whose page number is zero, whose cumulative
// checksum does not verify, that is truncated, or frames after the last
// commit frame (an uncommitted tail) all end the walk WITHOUT an error, and
// leave the reader where it was, so Next may be called again once SQLite has
// written more. Only I/O errors other than io.EOF are errors. After a
// successful Next, Offset() is c.End and Checksums() are the running
// checksums after the commit frame.
func (r *WALReader) Next() (c WALCommit, ok bool, err error) {
	frameSize := int64(WALFrameHeaderSize) + int64(r.hdr.PageSize)
	if int64(len(r.buf)) != frameSize {
		r.buf = make([]byte, frameSize)
	}
	off, s1, s2 := r.off, r.s1, r.s2
	pages := r.pend
	if pages != nil {
		off, s1, s2 = r.pendOff, r.pendS1, r.pendS2
	}
	stop := func() (WALCommit, bool, error) {
		r.pend, r.pendOff, r.pendS1, r.pendS2 = pages, off, s1, s2
		return WALCommit{}, false, nil
	}
	for {
		if ok, err := r.readFrame(off); err != nil || !ok {
			if err != nil {
				return WALCommit{}, false, err
			}
			return stop()
		}
		fh := r.buf[:WALFrameHeaderSize]
		pgno := binary.BigEndian.Uint32(fh[0:])
		commit := binary.BigEndian.Uint32(fh[4:])
		if pgno == 0 ||
			binary.BigEndian.Uint32(fh[8:]) != r.hdr.Salt1 ||
			binary.BigEndian.Uint32(fh[12:]) != r.hdr.Salt2 {
			return stop()
		}
		n1, n2 := walChecksum(r.hdr.BigEndianChecksum, fh[:8], s1, s2)
		n1, n2 = walChecksum(r.hdr.BigEndianChecksum, r.buf[WALFrameHeaderSize:], n1, n2)
		if n1 != binary.BigEndian.Uint32(fh[16:]) || n2 != binary.BigEndian.Uint32(fh[20:]) {
			return stop()
		}
		s1, s2 = n1, n2
		if pages == nil {
			pages = make(map[uint32]int64, 4)
		}
		pages[pgno] = off + WALFrameHeaderSize
		off += frameSize
		if commit != 0 {
			c = WALCommit{Offset: r.off, End: off, Commit: commit, Pages: pages}
			r.off, r.s1, r.s2 = off, s1, s2
			r.pend = nil
			return c, true, nil
		}
	}
}

// PendingEnd returns the offset up to which frames of the uncommitted tail
// have been verified (Offset when there are none).
func (r *WALReader) PendingEnd() int64 {
	if r.pend == nil {
		return r.off
	}
	return r.pendOff
}

// Rewind forgets the verified uncommitted tail: SQLite rolled it back and is
// writing over it.
func (r *WALReader) Rewind() { r.pend = nil }

// readFrame reads the whole frame at off into r.buf. ok is false, with a nil
// error, when the file ends before the frame does.
func (r *WALReader) readFrame(off int64) (ok bool, err error) {
	n, err := r.r.ReadAt(r.buf, off)
	switch {
	case n == len(r.buf):
		return true, nil
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return false, nil
	default:
		return false, fmt.Errorf("read wal frame at offset %d: %w", off, err)
	}
}
