package litefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/litefs/litefs/internal/crc64iso"
	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

const (
	snapEncFrameHdr  = ltx.PageHeaderSize + 4 // page header and block size
	snapEncSkipAfter = 8                      // incompressible pages in a row before skipping
	snapEncTryEvery  = 32                     // while skipping, only every 32nd page is tried
	// snapEncMinSaving: a page is stored compressed only if that saves at
	// least 1/snapEncMinSaving of it. A SQLite page holding a 4000-byte
	// random blob compresses by about 2% (its few zero bytes): counting that
	// as compressible kept the encoder compressing every page of such a
	// database, about 14% of both daemons' CPU in a catch-up (perf), to save 2%.
	snapEncMinSaving = 8
)

// snapshotEncoder writes a snapshot LTX file (ltx v0.5.3 layout) to w: the
// header, one frame per page (page header, 4-byte block size, LZ4 block), a
// zero page header, the page index (uvarint pgno, offset and frame size per
// page, a zero end marker and the index size as a big-endian uint64) and the
// trailer. The file checksum covers every byte before it except that, as the
// decoder does, a page frame contributes its uncompressed page image instead
// of its LZ4 block.
//
// Pages are stored as literal-only LZ4 blocks unless compress is set. With
// compress, each page is compressed and stored compressed only if the result
// is at least an eighth smaller than the page. After 8 consecutive pages
// stored uncompressed,
// only every 32nd page is tried (the others are stored as literals) until a
// tried page compresses, which resets to trying every page.
//
// The bytes go to w through an asyncWriter, so writing overlaps encoding. A
// write error is reported by the next encodePage or close. Not safe for
// concurrent use; callers should defer abort.
type snapshotEncoder struct {
	hdr      ltx.Header
	compress bool
	lockPgno uint32
	next     uint32 // page number expected next; > Commit once complete
	n        int64  // file bytes written so far
	misses   int    // consecutive pages stored uncompressed
	literal  []byte // LZ4 literal-block prefix of a page
	index    []byte // page index records
	frame    [snapEncFrameHdr]byte
	zc       lz4.Compressor
	zbuf     []byte
	crc      uint64 // file checksum so far
	w        io.Writer
	aw       *asyncWriter
	err      error // sticky; the file can no longer be completed
	closed   bool
}

// newSnapshotEncoder validates hdr, which must be a snapshot header (MinTXID
// 1), and writes it. The caller must end the encoder with close or abort.
func newSnapshotEncoder(w io.Writer, hdr ltx.Header, compress bool) (*snapshotEncoder, error) {
	if !hdr.IsSnapshot() {
		return nil, fmt.Errorf("snapshot encoder: header min txid is %d, want 1", hdr.MinTXID)
	} else if err := hdr.Validate(); err != nil {
		return nil, fmt.Errorf("snapshot encoder: invalid header: %w", err)
	}
	b, err := hdr.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("snapshot encoder: marshal header: %w", err)
	}
	ps := int(hdr.PageSize)
	e := &snapshotEncoder{
		hdr: hdr, compress: compress, lockPgno: ltx.LockPgno(hdr.PageSize), next: 1,
		literal: appendLiteralPrefix(nil, ps),
		index:   make([]byte, 0, min(int(hdr.Commit), 1<<20)*12+1),
		w:       w, aw: newAsyncWriter(w),
	}
	if compress {
		e.zbuf = make([]byte, lz4.CompressBlockBound(ps))
	}
	if err := e.put(b, b); err != nil {
		e.abort()
		return nil, fmt.Errorf("snapshot encoder: %w", err)
	}
	return e, nil
}

// appendLiteralPrefix appends the token and length bytes of an LZ4 block
// holding n (>= 15) bytes as a single literal run with no match.
func appendLiteralPrefix(b []byte, n int) []byte {
	b = append(b, 0xF0)
	for n -= 15; n >= 255; n -= 255 {
		b = append(b, 255)
	}
	return append(b, byte(n))
}

// encodePage writes page pgno. Pages must be given in order 1, 2, 3, ...
// skipping the lock page, and data must be exactly one page; anything else
// is refused with an error and leaves the encoder usable. data may be reused
// once encodePage returns. Any other error stops the encoder.
func (e *snapshotEncoder) encodePage(pgno uint32, data []byte) error {
	switch {
	case e.closed:
		return errors.New("snapshot encoder: closed")
	case e.err != nil:
		return e.err
	case pgno == e.lockPgno:
		return fmt.Errorf("snapshot encoder: page %d is the lock page", pgno)
	case pgno > e.hdr.Commit:
		return fmt.Errorf("snapshot encoder: page %d beyond commit %d", pgno, e.hdr.Commit)
	case pgno != e.next:
		return fmt.Errorf("snapshot encoder: page %d out of sequence, want page %d", pgno, e.next)
	case len(data) != int(e.hdr.PageSize):
		return fmt.Errorf("snapshot encoder: page %d is %d bytes, want %d", pgno, len(data), e.hdr.PageSize)
	}
	start := e.n
	block := e.compressPage(data)
	size := len(e.literal) + len(data)
	if block != nil {
		size = len(block)
	}
	binary.BigEndian.PutUint32(e.frame[0:], pgno)
	binary.BigEndian.PutUint16(e.frame[4:], ltx.PageHeaderFlagSize)
	binary.BigEndian.PutUint32(e.frame[6:], uint32(size))
	err := e.put(e.frame[:], e.frame[:])
	if block != nil && err == nil {
		err = e.put(block, data)
	} else if err == nil {
		if err = e.put(e.literal, nil); err == nil {
			err = e.put(data, data)
		}
	}
	if err != nil {
		return e.fail(fmt.Errorf("snapshot encoder: page %d: %w", pgno, err))
	}
	e.index = binary.AppendUvarint(e.index, uint64(pgno))
	e.index = binary.AppendUvarint(e.index, uint64(start))
	e.index = binary.AppendUvarint(e.index, uint64(e.n-start))
	if e.next++; e.next == e.lockPgno {
		e.next++
	}
	return nil
}

// put writes b to the file and adds hashed (b itself, the page image of a
// compressed block, or nothing) to the file checksum.
func (e *snapshotEncoder) put(b, hashed []byte) error {
	e.crc = crc64iso.Update(e.crc, hashed)
	if _, err := e.aw.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	e.n += int64(len(b))
	return nil
}

// compressPage returns data's LZ4 block in e.zbuf, or nil if the page is to
// be stored as a literal block (see the snapshotEncoder doc for the rule).
func (e *snapshotEncoder) compressPage(data []byte) []byte {
	try := e.compress && (e.misses < snapEncSkipAfter ||
		(e.misses-snapEncSkipAfter)%snapEncTryEvery == snapEncTryEvery-1)
	if try {
		if n, err := e.zc.CompressBlock(data, e.zbuf); err == nil && n > 0 && n <= len(data)-len(data)/snapEncMinSaving {
			e.misses = 0
			return e.zbuf[:n]
		}
	}
	e.misses++
	return nil
}

// close ends the page block, writes the page index and the trailer with
// postApply, waits for the writes and returns the file size. It refuses,
// leaving the encoder usable, if pages up to Commit are missing; any other
// error stops the encoder.
func (e *snapshotEncoder) close(postApply ltx.Checksum) (int64, error) {
	if e.closed {
		return 0, errors.New("snapshot encoder: closed")
	} else if e.err != nil {
		return 0, e.err
	} else if e.next <= e.hdr.Commit {
		return 0, fmt.Errorf("snapshot encoder: close after page %d of %d", e.next-1, e.hdr.Commit)
	} else if (e.hdr.NoChecksum() && postApply != 0) || (!e.hdr.NoChecksum() && postApply&ltx.ChecksumFlag == 0) {
		return 0, fmt.Errorf("snapshot encoder: invalid post-apply checksum %s", postApply)
	}
	var b [ltx.PageHeaderSize + 1 + 16]byte // zero page header, index end marker, sizes
	end := b[:ltx.PageHeaderSize]
	tail := binary.BigEndian.AppendUint64(b[ltx.PageHeaderSize:ltx.PageHeaderSize+1], uint64(len(e.index)+1))
	tail = binary.BigEndian.AppendUint64(tail, uint64(postApply))
	for _, p := range [][]byte{end, e.index, tail} {
		if err := e.put(p, p); err != nil {
			return 0, e.fail(fmt.Errorf("snapshot encoder: close: %w", err))
		}
	}
	if err := e.aw.Close(); err != nil {
		return 0, e.fail(fmt.Errorf("snapshot encoder: close: write: %w", err))
	}
	sum := binary.BigEndian.AppendUint64(b[:0], uint64(ltx.ChecksumFlag|ltx.Checksum(e.crc)))
	if n, err := e.w.Write(sum); err != nil || n < len(sum) {
		if err == nil {
			err = io.ErrShortWrite
		}
		return 0, e.fail(fmt.Errorf("snapshot encoder: close: write file checksum: %w", err))
	}
	e.closed = true
	return e.n + ltx.ChecksumSize, nil
}

// abort stops the writing, dropping bytes not yet written, and waits for a
// write in progress. Later calls fail. It is idempotent and safe after
// close, whose result it leaves alone.
func (e *snapshotEncoder) abort() {
	e.aw.Abort()
	if e.err == nil && !e.closed {
		e.err = errors.New("snapshot encoder: aborted")
	}
}

// fail records err as sticky, stops the writing and returns err.
func (e *snapshotEncoder) fail(err error) error {
	e.err = err
	e.abort()
	return err
}
