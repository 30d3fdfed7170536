package http

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/fuzzseed"
)

// fuzzFrame is a decoded frame with its whole body.
type fuzzFrame struct {
	f       Frame
	body    []byte
	chunked bool
}

// FuzzFrameReader decodes an arbitrary replication stream. It must not
// panic, hang or allocate for a length it was only told about: it reads at
// most one frame per 5 bytes and never more body than the stream holds.
// Whatever decodes cleanly to the end must encode again, with FrameWriter,
// into a stream that decodes to the same frames.
func FuzzFrameReader(f *testing.F) {
	valid := fuzzFrameStream(f)
	fuzzseed.Add(f, "every-frame-type", valid)
	fuzzseed.Add(f, "truncated", fuzzseed.Truncated(valid))
	fuzzseed.Add(f, "flipped-length", fuzzseed.Flipped(valid, 3))
	fuzzseed.Add(f, "flipped-body", fuzzseed.Flipped(valid, 20))
	huge := []byte{byte(FrameLTX), 0, 0, 0, 4, 'a', '.', 'd', 'b', 0x00, 0x00, 0x0f, 0xff, 0xff, 0xff, 0xff, 0xff}
	fuzzseed.Add(f, "huge-body-length", huge)
	fuzzseed.Add(f, "huge-meta-length", []byte{byte(FrameEnd), 0xff, 0xff, 0xff, 0xff})
	chunk := []byte{byte(FrameLTX), 0, 0, 0, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 'x'}
	fuzzseed.Add(f, "huge-chunk-length", chunk)
	f.Fuzz(func(t *testing.T, b []byte) {
		frames, err := fuzzReadFrames(t, b)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		fw := NewFrameWriter(&buf)
		for _, fr := range frames {
			if err := fuzzWriteFrame(fw, fr); err != nil {
				t.Fatalf("re-encode %s frame: %v", fr.f.Type, err)
			}
		}
		again, err := fuzzReadFrames(t, buf.Bytes())
		if err != nil {
			t.Fatalf("re-encoded stream does not decode: %v", err)
		}
		if len(again) != len(frames) {
			t.Fatalf("re-encoded stream has %d frames, want %d", len(again), len(frames))
		}
		for i := range frames {
			a, w := again[i], frames[i]
			if a.f.Type != w.f.Type || a.f.Name != w.f.Name || !a.f.Time.Equal(w.f.Time) ||
				a.f.Reason != w.f.Reason || !bytes.Equal(a.body, w.body) {
				t.Fatalf("frame %d: %+v after re-encoding, want %+v", i, a.f, w.f)
			}
		}
	})
}

// fuzzReadFrames decodes every frame of b, reading each body in full. err
// is the first decoding error (nil at a clean end).
func fuzzReadFrames(t *testing.T, b []byte) ([]fuzzFrame, error) {
	fr := NewFrameReader(bytes.NewReader(b))
	var frames []fuzzFrame
	for i := 0; ; i++ {
		if i > len(b)/5 {
			t.Fatalf("%d frames from %d bytes", i, len(b))
		}
		f, err := fr.Next()
		if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return frames, nil
		} else if err != nil {
			return frames, err
		}
		ff := fuzzFrame{f: f, chunked: f.BodySize < 0}
		if f.Type == FrameLTX {
			body, err := io.ReadAll(io.LimitReader(f.Body, int64(len(b))+1))
			if len(body) > len(b) {
				t.Fatalf("%d bytes of body from a %d-byte stream", len(body), len(b))
			}
			if err != nil {
				return frames, err
			}
			if !ff.chunked && int64(len(body)) != f.BodySize {
				t.Fatalf("body of %d bytes read as %d", f.BodySize, len(body))
			}
			ff.body = body
		}
		frames = append(frames, ff)
	}
}

// fuzzWriteFrame writes fr again with fw.
func fuzzWriteFrame(fw *FrameWriter, fr fuzzFrame) error {
	switch fr.f.Type {
	case FrameLTX:
		if fr.chunked {
			_, err := fw.WriteLTXStream(fr.f.Name, func(w io.Writer) error {
				_, err := w.Write(fr.body)
				return err
			})
			return err
		}
		return fw.WriteLTX(fr.f.Name, bytes.NewReader(fr.body), int64(len(fr.body)))
	case FrameReady:
		return fw.WriteReady(fr.f.Time)
	case FrameHeartbeat:
		return fw.WriteHeartbeat(fr.f.Time)
	case FrameDrop:
		return fw.WriteDrop(fr.f.Name)
	case FrameEnd:
		return fw.WriteEnd(fr.f.Reason)
	case FrameHandoff:
		return fw.WriteHandoff()
	}
	return errors.New("unknown frame type")
}

// fuzzFrameStream returns a stream holding one frame of every type, and a
// chunked LTX frame.
func fuzzFrameStream(tb testing.TB) []byte {
	tb.Helper()
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	t0 := time.UnixMilli(1700000000123)
	body := []byte("LTX\x01 not really an LTX file, the frame does not look inside")
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], 7)
	for _, err := range []error{
		fw.WriteLTX("a.db", bytes.NewReader(body), int64(len(body))),
		fw.WriteReady(t0),
		fw.WriteHeartbeat(t0.Add(time.Second)),
		fw.WriteDrop("b.db"),
		func() error {
			_, err := fw.WriteLTXStream("c.db", func(w io.Writer) error {
				if _, err := w.Write(body[:10]); err != nil {
					return err
				}
				_, err := w.Write(append(n[:], body[10:]...))
				return err
			})
			return err
		}(),
		fw.WriteHandoff(),
		fw.WriteEnd("shutting down"),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}
