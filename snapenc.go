package litefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/litefs/litefs/internal/crc64iso"
	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

const (
	snapEncChunkSize = 256 << 10 // bytes per chunk handed to the writer goroutine
	snapEncChunks    = 4         // chunks in circulation, so memory stays flat
	snapEncFrameHdr  = ltx.PageHeaderSize + 4
	snapEncSkipAfter = 8  // incompressible pages in a row before skipping
	snapEncTryEvery  = 32 // while skipping, only every 32nd page is tried
)

// snapEncSpan is a range of a chunk's out or raw buffer that goes into the
// file checksum.
type snapEncSpan struct {
	raw        bool
	start, end int
}

// snapEncChunk is a unit of work for the writer goroutine. out holds file
// bytes; raw holds the page images of compressed frames, which the decoder
// hashes in place of the compressed bytes; spans lists, in file order, the
// bytes the file checksum covers.
type snapEncChunk struct {
	out, raw []byte
	spans    []snapEncSpan
}

// hash records that b[start:end] is covered by the file checksum, where b is
// raw if raw is set and out otherwise; adjacent ranges are merged.
func (c *snapEncChunk) hash(raw bool, start, end int) {
	if n := len(c.spans); n > 0 && c.spans[n-1].raw == raw && c.spans[n-1].end == start {
		c.spans[n-1].end = end
		return
	}
	c.spans = append(c.spans, snapEncSpan{raw: raw, start: start, end: end})
}

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
// is smaller than the page. After 8 consecutive pages stored uncompressed,
// only every 32nd page is tried (the others are stored as literals) until a
// tried page compresses, which resets to trying every page.
//
// The encoder fills 256 KiB chunks and hands them to a goroutine that updates
// the checksum and writes them to w, so w sees large writes. A write error is
// reported by the next encodePage or close. Not safe for concurrent use;
// callers should defer abort.
type snapshotEncoder struct {
	hdr             ltx.Header
	compress        bool
	lockPgno        uint32
	next            uint32 // page number expected next; > Commit once complete
	n               int64  // file bytes queued so far
	misses          int    // consecutive pages stored uncompressed
	literal         []byte // LZ4 literal-block prefix of a page
	index           []byte // page index records
	zc              lz4.Compressor
	zbuf            []byte
	err             error // sticky; the file can no longer be completed
	stopped, closed bool

	// Shared with the writer goroutine, run.
	w          io.Writer
	cur        *snapEncChunk      // chunk being filled, owned by the encoder
	full, free chan *snapEncChunk // chunks to write; emptied chunks
	failed     chan struct{}      // closed by run on a write error
	done       chan struct{}      // closed when run exits
	cancel     atomic.Bool        // set by abort: run drops chunks unwritten
	werr       error              // run's error, read once failed is closed
	crc        uint64             // file checksum so far, read once done is closed
}

// newSnapshotEncoder validates hdr, which must be a snapshot header (MinTXID
// 1), queues it and starts the writer goroutine. The caller must end the
// encoder with close or abort.
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
		w:       w, full: make(chan *snapEncChunk, snapEncChunks), free: make(chan *snapEncChunk, snapEncChunks),
		failed: make(chan struct{}), done: make(chan struct{}),
	}
	rawSize := 0 // raw only holds the page images of compressed frames
	if compress {
		e.zbuf, rawSize = make([]byte, lz4.CompressBlockBound(ps)), snapEncChunkSize
	}
	for range snapEncChunks {
		e.free <- &snapEncChunk{
			out: make([]byte, 0, snapEncChunkSize), raw: make([]byte, 0, rawSize),
			spans: make([]snapEncSpan, 0, 4*(snapEncChunkSize/ps)+8),
		}
	}
	e.cur = <-e.free
	e.cur.out = append(e.cur.out, b...)
	e.cur.hash(false, 0, len(b))
	e.n = int64(len(b))
	go e.run()
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

// encodePage queues page pgno. Pages must be given in order 1, 2, 3, ...
// skipping the lock page, and data must be exactly one page; anything else
// is refused with an error and leaves the encoder usable. data may be reused
// once encodePage returns. Any other error stops the encoder.
func (e *snapshotEncoder) encodePage(pgno uint32, data []byte) error {
	switch err := e.usable(); {
	case err != nil:
		return err
	case pgno == e.lockPgno:
		return fmt.Errorf("snapshot encoder: page %d is the lock page", pgno)
	case pgno > e.hdr.Commit:
		return fmt.Errorf("snapshot encoder: page %d beyond commit %d", pgno, e.hdr.Commit)
	case pgno != e.next:
		return fmt.Errorf("snapshot encoder: page %d out of sequence, want page %d", pgno, e.next)
	case len(data) != int(e.hdr.PageSize):
		return fmt.Errorf("snapshot encoder: page %d is %d bytes, want %d", pgno, len(data), e.hdr.PageSize)
	}

	block := e.compressPage(data)
	size := len(e.literal) + len(data)
	if block != nil {
		size = len(block)
	}
	c := e.cur
	if cap(c.out)-len(c.out) < snapEncFrameHdr+size || (block != nil && cap(c.raw)-len(c.raw) < len(data)) {
		if err := e.flush(); err != nil {
			return e.fail(fmt.Errorf("snapshot encoder: page %d: %w", pgno, err))
		}
		c = e.cur
	}

	start := len(c.out)
	c.out = binary.BigEndian.AppendUint32(c.out, pgno)
	c.out = binary.BigEndian.AppendUint16(c.out, ltx.PageHeaderFlagSize)
	c.out = binary.BigEndian.AppendUint32(c.out, uint32(size))
	c.hash(false, start, len(c.out))
	if block != nil {
		c.out = append(c.out, block...)
		c.raw = append(c.raw, data...)
		c.hash(true, len(c.raw)-len(data), len(c.raw))
	} else {
		c.out = append(c.out, e.literal...)
		c.out = append(c.out, data...)
		c.hash(false, len(c.out)-len(data), len(c.out))
	}

	frame := len(c.out) - start
	e.index = binary.AppendUvarint(e.index, uint64(pgno))
	e.index = binary.AppendUvarint(e.index, uint64(e.n))
	e.index = binary.AppendUvarint(e.index, uint64(frame))
	e.n += int64(frame)
	if e.next++; e.next == e.lockPgno {
		e.next++
	}
	return nil
}

// compressPage returns data's LZ4 block in e.zbuf, or nil if the page is to
// be stored as a literal block (see the snapshotEncoder doc for the rule).
func (e *snapshotEncoder) compressPage(data []byte) []byte {
	try := e.compress && (e.misses < snapEncSkipAfter ||
		(e.misses-snapEncSkipAfter)%snapEncTryEvery == snapEncTryEvery-1)
	if try {
		if n, err := e.zc.CompressBlock(data, e.zbuf); err == nil && n > 0 && n < len(data) {
			e.misses = 0
			return e.zbuf[:n]
		}
	}
	e.misses++
	return nil
}

// close ends the page block, writes the page index and the trailer with
// postApply, waits for the writer goroutine and returns the file size. It
// refuses, leaving the encoder usable, if pages up to Commit are missing;
// any other error stops the encoder.
func (e *snapshotEncoder) close(postApply ltx.Checksum) (int64, error) {
	if err := e.usable(); err != nil {
		return 0, err
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
		if err := e.put(p); err != nil {
			return 0, e.fail(fmt.Errorf("snapshot encoder: close: %w", err))
		}
	}
	if len(e.cur.out) > 0 {
		e.full <- e.cur
		e.cur = nil
	}
	e.stop()
	if e.werr != nil {
		return 0, e.fail(fmt.Errorf("snapshot encoder: close: write: %w", e.werr))
	}

	fileChecksum := binary.BigEndian.AppendUint64(b[:0], uint64(ltx.ChecksumFlag|ltx.Checksum(e.crc)))
	if err := snapEncWrite(e.w, fileChecksum); err != nil {
		return 0, e.fail(fmt.Errorf("snapshot encoder: close: write file checksum: %w", err))
	}
	e.closed = true
	return e.n + ltx.ChecksumSize, nil
}

// abort stops the writer goroutine, dropping chunks not yet written, and
// waits for it (and so for a w.Write in progress). Later calls fail. It is
// idempotent and safe after close, whose result it leaves alone.
func (e *snapshotEncoder) abort() {
	e.cancel.Store(true)
	e.stop()
	if e.err == nil && !e.closed {
		e.err = errors.New("snapshot encoder: aborted")
	}
}

// stop ends the writer goroutine once it has drained the queued chunks.
func (e *snapshotEncoder) stop() {
	if !e.stopped {
		e.stopped = true
		close(e.full)
		<-e.done
	}
}

// fail records err as sticky, stops the writer goroutine and returns err.
func (e *snapshotEncoder) fail(err error) error {
	e.err = err
	e.abort()
	return err
}

// usable returns an error if the encoder is closed, aborted or failed,
// including by a write error the writer goroutine reported, which stops it.
func (e *snapshotEncoder) usable() error {
	if e.closed {
		return errors.New("snapshot encoder: closed")
	} else if e.err != nil {
		return e.err
	}
	select {
	case <-e.failed:
		return e.fail(fmt.Errorf("snapshot encoder: write: %w", e.werr))
	default:
		return nil
	}
}

// put queues b as hashed file bytes, spreading it over as many chunks as
// needed.
func (e *snapshotEncoder) put(b []byte) error {
	for len(b) > 0 {
		c := e.cur
		if len(c.out) == cap(c.out) {
			if err := e.flush(); err != nil {
				return err
			}
			continue
		}
		k := min(len(b), cap(c.out)-len(c.out))
		c.out = append(c.out, b[:k]...)
		c.hash(false, len(c.out)-k, len(c.out))
		e.n += int64(k)
		b = b[k:]
	}
	return nil
}

// flush hands the current chunk to the writer goroutine and takes an empty
// one, waiting while all chunks are in flight.
func (e *snapshotEncoder) flush() error {
	e.full <- e.cur
	e.cur = <-e.free
	select {
	case <-e.failed:
		return fmt.Errorf("write: %w", e.werr)
	default:
		return nil
	}
}

// run is the writer goroutine: it checksums and writes each chunk, then
// returns it to the free list. After an error or abort it only recycles.
func (e *snapshotEncoder) run() {
	defer close(e.done)
	for c := range e.full {
		if e.werr == nil && !e.cancel.Load() {
			for _, s := range c.spans {
				b := c.out
				if s.raw {
					b = c.raw
				}
				e.crc = crc64iso.Update(e.crc, b[s.start:s.end])
			}
			if e.werr = snapEncWrite(e.w, c.out); e.werr != nil {
				close(e.failed)
			}
		}
		c.out, c.raw, c.spans = c.out[:0], c.raw[:0], c.spans[:0]
		e.free <- c
	}
}

// snapEncWrite writes b to w, reporting a short write as an error.
func snapEncWrite(w io.Writer, b []byte) error {
	n, err := w.Write(b)
	if err == nil && n < len(b) {
		err = io.ErrShortWrite
	}
	return err
}
