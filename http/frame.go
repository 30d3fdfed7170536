package http

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/litefs/litefs"
)

// The replication stream (POST /stream) is a sequence of frames. Every frame
// starts with the same five bytes:
//
//	type:u8  meta_len:u32 (big-endian)  meta:[meta_len]byte
//
// and an LTX frame then carries the file itself, streamed:
//
//	body_len:u64 (big-endian)  body:[body_len]byte
//
// or, for a file streamed while it is encoded (a snapshot), whose size is not
// known in advance, body_len 0xFFFFFFFFFFFFFFFF and then chunks ended by an
// empty one:
//
//	(chunk_len:u32 (big-endian, 1..MaxFrameChunkSize)  chunk:[chunk_len]byte)*  0:u32
//
// Meta by frame type:
//
//	LTX        the database name              (followed by the LTX file)
//	Ready      8 bytes: time T, unix ms (big-endian int64)  (initial catch-up done)
//	Heartbeat  8 bytes: time T, unix ms (big-endian int64)  (every second)
//	Drop       the database name              (the database was deleted on the primary)
//	End        a human-readable reason, may be empty (the primary closes the stream)
//	Handoff    empty: the primary stopped taking writes, everything it committed
//	           was sent before this frame, and it hands the lease to this replica
//
// In Ready and Heartbeat, T is the primary's clock at the start of its last
// complete catch-up pass: every transaction committed on the primary before
// T was sent before the frame. The replica's lag is derived from it.
//
// Database names are checked with litefs.ValidateName on both sides; meta is
// at most MaxFrameMetaSize bytes and an LTX body at most MaxFrameBodySize.
// Anything else (unknown type, oversized or malformed meta, a stream cut in
// the middle of a frame) is an error that ends the stream.

// FrameType identifies the kind of a stream frame.
type FrameType uint8

// Frame types of the replication stream.
const (
	FrameLTX       FrameType = 1 // one LTX file for one database
	FrameReady     FrameType = 2 // initial catch-up done, as of Time
	FrameHeartbeat FrameType = 3 // caught up as of Time; sent every second
	FrameDrop      FrameType = 4 // database deleted on the primary
	FrameEnd       FrameType = 5 // the primary ends the stream
	FrameHandoff   FrameType = 6 // the primary hands the lease to this replica
)

// String returns the frame type's name for log lines and errors.
func (t FrameType) String() string {
	switch t {
	case FrameLTX:
		return "ltx"
	case FrameReady:
		return "ready"
	case FrameHeartbeat:
		return "heartbeat"
	case FrameDrop:
		return "drop"
	case FrameEnd:
		return "end"
	case FrameHandoff:
		return "handoff"
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// Frame size limits.
const (
	MaxFrameMetaSize  = 4096    // bytes of meta in any frame
	MaxFrameBodySize  = 1 << 44 // bytes of an LTX file in one frame (16 TiB)
	MaxFrameChunkSize = 1 << 24 // bytes in one chunk of a chunked body
)

// chunkedBody, as an LTX frame's body length, says the body follows in chunks.
const chunkedBody = ^uint64(0)

// ErrBadFrame is wrapped by every error about a malformed frame.
var ErrBadFrame = errors.New("malformed stream frame")

// Frame is one decoded frame. For an LTX frame, Body reads the LTX file; it
// is valid until the next call to FrameReader.Next, and ends with
// io.ErrUnexpectedEOF if the stream is cut before BodySize bytes.
type Frame struct {
	Type     FrameType
	Name     string    // LTX, Drop: the database
	Time     time.Time // Ready, Heartbeat: everything the primary committed before it was sent
	Reason   string    // End: why the stream ends
	Body     io.Reader // LTX: the file
	BodySize int64     // LTX: the file's size; -1 when it comes in chunks
}

// FrameWriter encodes frames onto a stream.
type FrameWriter struct {
	w io.Writer
}

// NewFrameWriter returns a FrameWriter writing to w.
func NewFrameWriter(w io.Writer) *FrameWriter { return &FrameWriter{w: w} }

// writeHeader writes the type, meta length and meta of a frame.
func (fw *FrameWriter) writeHeader(typ FrameType, meta []byte) error {
	if len(meta) > MaxFrameMetaSize {
		return fmt.Errorf("write %s frame: meta is %d bytes, limit %d: %w", typ, len(meta), MaxFrameMetaSize, ErrBadFrame)
	}
	buf := make([]byte, 5, 5+len(meta))
	buf[0] = byte(typ)
	binary.BigEndian.PutUint32(buf[1:], uint32(len(meta)))
	buf = append(buf, meta...)
	if _, err := fw.w.Write(buf); err != nil {
		return fmt.Errorf("write %s frame: %w", typ, err)
	}
	return nil
}

// WriteLTX writes an LTX frame for database name, copying exactly size
// bytes of the file from r.
func (fw *FrameWriter) WriteLTX(name string, r io.Reader, size int64) error {
	if err := litefs.ValidateName(name); err != nil {
		return fmt.Errorf("write ltx frame: %w", err)
	}
	if size < 0 || size > MaxFrameBodySize {
		return fmt.Errorf("write ltx frame: body size %d out of range: %w", size, ErrBadFrame)
	}
	if err := fw.writeHeader(FrameLTX, []byte(name)); err != nil {
		return err
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(size))
	if _, err := fw.w.Write(n[:]); err != nil {
		return fmt.Errorf("write ltx frame: %w", err)
	}
	copied, err := io.CopyN(fw.w, r, size)
	if err != nil {
		return fmt.Errorf("write ltx frame for %q: %d of %d bytes: %w", name, copied, size, err)
	}
	return nil
}

// WriteLTXStream writes an LTX frame for database name whose body encode
// writes while it produces it, in chunks (the size is not known in advance),
// and returns the body's size. An error from encode leaves the frame
// unfinished: the stream must end.
func (fw *FrameWriter) WriteLTXStream(name string, encode func(w io.Writer) error) (int64, error) {
	if err := litefs.ValidateName(name); err != nil {
		return 0, fmt.Errorf("write ltx frame: %w", err)
	}
	if err := fw.writeHeader(FrameLTX, []byte(name)); err != nil {
		return 0, err
	}
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], chunkedBody)
	if _, err := fw.w.Write(n[:]); err != nil {
		return 0, fmt.Errorf("write ltx frame: %w", err)
	}
	cw := &chunkWriter{w: fw.w}
	if err := encode(cw); err != nil {
		return cw.n, fmt.Errorf("write ltx frame for %q after %d bytes: %w", name, cw.n, err)
	}
	var end [4]byte // an empty chunk ends the body
	if _, err := fw.w.Write(end[:]); err != nil {
		return cw.n, fmt.Errorf("write ltx frame for %q: %w", name, err)
	}
	return cw.n, nil
}

// chunkWriter writes each Write as chunks of a chunked frame body.
type chunkWriter struct {
	w   io.Writer
	n   int64
	hdr [4]byte
}

// Write implements io.Writer; an empty p writes nothing (an empty chunk
// would end the body).
func (c *chunkWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := min(len(p), MaxFrameChunkSize)
		binary.BigEndian.PutUint32(c.hdr[:], uint32(k))
		if _, err := c.w.Write(c.hdr[:]); err != nil {
			return written, err
		}
		if _, err := c.w.Write(p[:k]); err != nil {
			return written, err
		}
		written += k
		c.n += int64(k)
		p = p[k:]
	}
	return written, nil
}

// WriteReady writes a Ready frame carrying t (millisecond precision).
func (fw *FrameWriter) WriteReady(t time.Time) error { return fw.writeTime(FrameReady, t) }

// WriteHeartbeat writes a Heartbeat frame carrying t (millisecond precision).
func (fw *FrameWriter) WriteHeartbeat(t time.Time) error { return fw.writeTime(FrameHeartbeat, t) }

// writeTime writes a frame whose meta is a time.
func (fw *FrameWriter) writeTime(typ FrameType, t time.Time) error {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(t.UnixMilli()))
	return fw.writeHeader(typ, b[:])
}

// WriteDrop writes a Drop frame for database name.
func (fw *FrameWriter) WriteDrop(name string) error {
	if err := litefs.ValidateName(name); err != nil {
		return fmt.Errorf("write drop frame: %w", err)
	}
	return fw.writeHeader(FrameDrop, []byte(name))
}

// WriteEnd writes an End frame with a reason (truncated to the meta limit).
func (fw *FrameWriter) WriteEnd(reason string) error {
	if len(reason) > MaxFrameMetaSize {
		reason = reason[:MaxFrameMetaSize]
	}
	return fw.writeHeader(FrameEnd, []byte(reason))
}

// WriteHandoff writes a Handoff frame: everything committed was sent before
// it, and the receiving replica is to take the lease.
func (fw *FrameWriter) WriteHandoff() error { return fw.writeHeader(FrameHandoff, nil) }

// FrameReader decodes frames from a stream.
type FrameReader struct {
	r    *bufio.Reader
	body *bodyReader // the previous LTX frame's body, drained by Next
}

// NewFrameReader returns a FrameReader reading from r.
func NewFrameReader(r io.Reader) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Buffered reports how many bytes of the stream have arrived and wait in
// the reader: with the current frame's body read, a positive count means the
// next frame has (at least partly) arrived.
func (r *FrameReader) Buffered() int { return r.r.Buffered() }

// chunkedSize is the size of the current frame's chunked body read so far.
func (fr *FrameReader) chunkedSize() int64 {
	if fr.body == nil {
		return 0
	}
	return fr.body.total
}

// Next returns the next frame. Any unread part of the previous frame's body
// is skipped first. At a clean end of stream (between frames) it returns
// io.EOF; a stream cut inside a frame is io.ErrUnexpectedEOF.
func (fr *FrameReader) Next() (Frame, error) {
	if fr.body != nil {
		if _, err := io.Copy(io.Discard, fr.body); err != nil {
			return Frame{}, fmt.Errorf("skip rest of ltx frame: %w", err)
		}
		fr.body = nil
	}
	var hdr [5]byte
	if _, err := io.ReadFull(fr.r, hdr[:1]); err != nil {
		return Frame{}, err // io.EOF: clean end between frames
	}
	if _, err := io.ReadFull(fr.r, hdr[1:]); err != nil {
		return Frame{}, fmt.Errorf("read frame header: %w", eofUnexpected(err))
	}
	typ := FrameType(hdr[0])
	metaLen := binary.BigEndian.Uint32(hdr[1:])
	if metaLen > MaxFrameMetaSize {
		return Frame{}, fmt.Errorf("%s frame meta is %d bytes, limit %d: %w", typ, metaLen, MaxFrameMetaSize, ErrBadFrame)
	}
	meta := make([]byte, metaLen)
	if _, err := io.ReadFull(fr.r, meta); err != nil {
		return Frame{}, fmt.Errorf("read %s frame meta: %w", typ, eofUnexpected(err))
	}
	return fr.decode(typ, meta)
}

// decode interprets a frame's meta by type, and opens an LTX frame's body.
func (fr *FrameReader) decode(typ FrameType, meta []byte) (Frame, error) {
	f := Frame{Type: typ}
	switch typ {
	case FrameReady, FrameHeartbeat:
		if len(meta) != 8 {
			return f, fmt.Errorf("%s frame has %d bytes of meta, want 8: %w", typ, len(meta), ErrBadFrame)
		}
		f.Time = time.UnixMilli(int64(binary.BigEndian.Uint64(meta)))
	case FrameEnd:
		f.Reason = string(meta)
	case FrameHandoff:
		if len(meta) != 0 {
			return f, fmt.Errorf("%s frame has %d bytes of meta, want 0: %w", typ, len(meta), ErrBadFrame)
		}
	case FrameDrop, FrameLTX:
		f.Name = string(meta)
		if err := litefs.ValidateName(f.Name); err != nil {
			return f, fmt.Errorf("%s frame: %w: %w", typ, ErrBadFrame, err)
		}
		if typ == FrameLTX {
			return fr.openBody(f)
		}
	default:
		return f, fmt.Errorf("unknown frame type %d: %w", uint8(typ), ErrBadFrame)
	}
	return f, nil
}

// openBody reads an LTX frame's body length and sets up its reader.
func (fr *FrameReader) openBody(f Frame) (Frame, error) {
	var n [8]byte
	if _, err := io.ReadFull(fr.r, n[:]); err != nil {
		return f, fmt.Errorf("read ltx frame length: %w", eofUnexpected(err))
	}
	size := binary.BigEndian.Uint64(n[:])
	if size == chunkedBody {
		fr.body = &bodyReader{r: fr.r, chunked: true}
		f.Body, f.BodySize = fr.body, -1
		return f, nil
	}
	if size > MaxFrameBodySize {
		return f, fmt.Errorf("ltx frame for %q is %d bytes, limit %d: %w", f.Name, size, uint64(MaxFrameBodySize), ErrBadFrame)
	}
	fr.body = &bodyReader{r: fr.r, n: int64(size)}
	f.Body, f.BodySize = fr.body, int64(size)
	return f, nil
}

// bodyReader reads exactly n bytes of a frame body, or a chunked body to its
// empty chunk; an early end of the stream is io.ErrUnexpectedEOF, never a
// silent short file.
type bodyReader struct {
	r       io.Reader
	n       int64 // bytes left in the body (chunked: in the current chunk)
	chunked bool
	ended   bool  // chunked: the empty chunk was read
	total   int64 // chunked: bytes of all chunks so far
}

// nextChunk reads the next chunk length of a chunked body.
func (b *bodyReader) nextChunk() error {
	var h [4]byte
	if _, err := io.ReadFull(b.r, h[:]); err != nil {
		return fmt.Errorf("read ltx frame chunk length: %w", eofUnexpected(err))
	}
	n := int64(binary.BigEndian.Uint32(h[:]))
	switch {
	case n == 0:
		b.ended = true
	case n > MaxFrameChunkSize:
		return fmt.Errorf("ltx frame chunk is %d bytes, limit %d: %w", n, MaxFrameChunkSize, ErrBadFrame)
	case b.total+n > MaxFrameBodySize:
		return fmt.Errorf("chunked ltx frame exceeds %d bytes: %w", int64(MaxFrameBodySize), ErrBadFrame)
	}
	b.n, b.total = n, b.total+n
	return nil
}

// Read implements io.Reader.
func (b *bodyReader) Read(p []byte) (int, error) {
	for b.chunked && b.n <= 0 && !b.ended {
		if err := b.nextChunk(); err != nil {
			return 0, err
		}
	}
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		if b.n > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

// eofUnexpected turns io.EOF inside a frame into io.ErrUnexpectedEOF.
func eofUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
