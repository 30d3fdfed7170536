package http

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestFrame_RoundTripsEveryType(t *testing.T) {
	ts := time.UnixMilli(1_700_000_000_123)
	body := bytes.Repeat([]byte("ltx!"), 5000)
	tests := []struct {
		name  string
		write func(fw *FrameWriter) error
		want  Frame
		body  []byte
	}{
		{"ltx", func(fw *FrameWriter) error { return fw.WriteLTX("a.db", bytes.NewReader(body), int64(len(body))) },
			Frame{Type: FrameLTX, Name: "a.db", BodySize: int64(len(body))}, body},
		{"empty ltx body", func(fw *FrameWriter) error { return fw.WriteLTX("b", bytes.NewReader(nil), 0) },
			Frame{Type: FrameLTX, Name: "b"}, []byte{}},
		{"chunked ltx", func(fw *FrameWriter) error { return writeChunked(fw, "a.db", body, 7, 0, 100) },
			Frame{Type: FrameLTX, Name: "a.db", BodySize: -1}, body},
		{"chunked ltx, empty", func(fw *FrameWriter) error { return writeChunked(fw, "c", nil) },
			Frame{Type: FrameLTX, Name: "c", BodySize: -1}, []byte{}},
		{"ready", func(fw *FrameWriter) error { return fw.WriteReady(ts) }, Frame{Type: FrameReady, Time: ts}, nil},
		{"heartbeat", func(fw *FrameWriter) error { return fw.WriteHeartbeat(ts) }, Frame{Type: FrameHeartbeat, Time: ts}, nil},
		{"drop", func(fw *FrameWriter) error { return fw.WriteDrop("gone.db") }, Frame{Type: FrameDrop, Name: "gone.db"}, nil},
		{"end", func(fw *FrameWriter) error { return fw.WriteEnd("bye") }, Frame{Type: FrameEnd, Reason: "bye"}, nil},
		{"end without reason", func(fw *FrameWriter) error { return fw.WriteEnd("") }, Frame{Type: FrameEnd}, nil},
		{"handoff", func(fw *FrameWriter) error { return fw.WriteHandoff() }, Frame{Type: FrameHandoff}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.write(NewFrameWriter(&buf)); err != nil {
				t.Fatal(err)
			}
			fr := NewFrameReader(&buf)
			f, err := fr.Next()
			if err != nil {
				t.Fatal(err)
			}
			if f.Type != tt.want.Type || f.Name != tt.want.Name || !f.Time.Equal(tt.want.Time) ||
				f.Reason != tt.want.Reason || f.BodySize != tt.want.BodySize {
				t.Fatalf("frame %+v, want %+v", f, tt.want)
			}
			if tt.body != nil {
				got, err := io.ReadAll(f.Body)
				if err != nil || !bytes.Equal(got, tt.body) {
					t.Fatalf("body %d bytes (err %v), want %d bytes", len(got), err, len(tt.body))
				}
			}
			if _, err := fr.Next(); err != io.EOF {
				t.Fatalf("after the frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestFrame_NextSkipsUnreadBody(t *testing.T) {
	var buf bytes.Buffer
	fw := NewFrameWriter(&buf)
	if err := fw.WriteLTX("a.db", strings.NewReader("0123456789"), 10); err != nil {
		t.Fatal(err)
	}
	if err := fw.WriteDrop("b.db"); err != nil {
		t.Fatal(err)
	}
	fr := NewFrameReader(&buf)
	f, err := fr.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(f.Body, make([]byte, 3)); err != nil {
		t.Fatal(err)
	}
	f, err = fr.Next()
	if err != nil || f.Type != FrameDrop || f.Name != "b.db" {
		t.Fatalf("second frame %+v, %v; want drop b.db", f, err)
	}
}

// rawFrame encodes a frame header by hand, bypassing the writer's checks.
func rawFrame(typ byte, meta []byte, extra ...byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(meta)))
	return append(append(b, meta...), extra...)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func TestFrame_RejectsTruncatedAndGarbage(t *testing.T) {
	good := rawFrame(byte(FrameLTX), []byte("a.db"), append(u64(4), "abcd"...)...)
	tests := []struct {
		name    string
		data    []byte
		wantErr error // nil: any error
	}{
		{"cut in header", good[:3], io.ErrUnexpectedEOF},
		{"cut in meta", good[:7], io.ErrUnexpectedEOF},
		{"cut in body length", good[:12], io.ErrUnexpectedEOF},
		{"unknown type", rawFrame(99, nil), ErrBadFrame},
		{"type zero", rawFrame(0, nil), ErrBadFrame},
		{"meta too long", []byte{byte(FrameEnd), 0xff, 0xff, 0xff, 0xff}, ErrBadFrame},
		{"name with slash", rawFrame(byte(FrameLTX), []byte("a/b"), u64(0)...), ErrBadFrame},
		{"dotdot name", rawFrame(byte(FrameDrop), []byte("..")), ErrBadFrame},
		{"parent path", rawFrame(byte(FrameDrop), []byte("../x")), ErrBadFrame},
		{"empty name", rawFrame(byte(FrameDrop), nil), ErrBadFrame},
		{"NUL in name", rawFrame(byte(FrameDrop), []byte("a\x00b")), ErrBadFrame},
		{"heartbeat meta short", rawFrame(byte(FrameHeartbeat), []byte{1, 2, 3}), ErrBadFrame},
		{"ready with junk", rawFrame(byte(FrameReady), []byte("junk")), ErrBadFrame},
		{"handoff with meta", rawFrame(byte(FrameHandoff), []byte("x")), ErrBadFrame},
		{"body length absurd", rawFrame(byte(FrameLTX), []byte("a.db"), u64(1<<62)...), ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewFrameReader(bytes.NewReader(tt.data)).Next()
			if err == nil {
				t.Fatal("garbage accepted")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// writeChunked writes a chunked LTX frame whose encoder writes body in
// writes of the given sizes, then the rest in one write.
func writeChunked(fw *FrameWriter, name string, body []byte, sizes ...int) error {
	_, err := fw.WriteLTXStream(name, func(w io.Writer) error {
		rest := body
		for _, n := range sizes {
			if _, err := w.Write(rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		_, err := w.Write(rest)
		return err
	})
	return err
}

func TestFrame_ChunkedBodyRoundTripsAcrossChunkLimit(t *testing.T) {
	var buf bytes.Buffer
	want := bytes.Repeat([]byte("0123456789abcdef"), (MaxFrameChunkSize+100)/16)
	n, err := NewFrameWriter(&buf).WriteLTXStream("big.db", func(w io.Writer) error {
		_, err := w.Write(want) // larger than one chunk: split by the writer
		return err
	})
	if err != nil || n != int64(len(want)) {
		t.Fatalf("wrote %d bytes (err %v), want %d", n, err, len(want))
	}
	fr := NewFrameReader(&buf)
	f, err := fr.Next()
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f.Body)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("body %d bytes (err %v), want %d", len(got), err, len(want))
	}
	if fr.chunkedSize() != int64(len(want)) {
		t.Fatalf("chunkedSize %d, want %d", fr.chunkedSize(), len(want))
	}
}

func TestFrame_ChunkedBodyRejectsTruncatedAndOversized(t *testing.T) {
	head := rawFrame(byte(FrameLTX), []byte("a.db"), u64(chunkedBody)...)
	chunk := func(n uint32, data string) []byte {
		return append(binary.BigEndian.AppendUint32(nil, n), data...)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(append([][]byte{head}, parts...), nil) }
	tests := []struct {
		name    string
		data    []byte
		wantErr error
	}{
		{"cut before the first chunk", cat(), io.ErrUnexpectedEOF},
		{"cut inside a chunk length", cat([]byte{0, 0}), io.ErrUnexpectedEOF},
		{"cut inside a chunk", cat(chunk(10, "abc")), io.ErrUnexpectedEOF},
		{"no end chunk", cat(chunk(3, "abc")), io.ErrUnexpectedEOF},
		{"chunk over the limit", cat(chunk(MaxFrameChunkSize+1, "x")), ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFrameReader(bytes.NewReader(tt.data)).Next()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(f.Body); !errors.Is(err, tt.wantErr) {
				t.Fatalf("reading the body: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestFrameWriter_StreamEncoderErrorIsReturned(t *testing.T) {
	var buf bytes.Buffer
	boom := errors.New("disk gone")
	_, err := NewFrameWriter(&buf).WriteLTXStream("a.db", func(w io.Writer) error {
		if _, err := w.Write([]byte("part")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"a.db"`) {
		t.Fatalf("error %v, want the encoder's error naming the database", err)
	}
	// The frame is unfinished: a reader must not take it for a whole file.
	f, err := NewFrameReader(&buf).Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(f.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading an unfinished body: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFrame_TruncatedBodyIsAnError(t *testing.T) {
	data := rawFrame(byte(FrameLTX), []byte("a.db"), append(u64(100), "only ten.."...)...)
	f, err := NewFrameReader(bytes.NewReader(data)).Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(f.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("reading a cut body: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestFrameWriter_RefusesBadNames(t *testing.T) {
	for _, name := range []string{"", "..", "a/b", "../x"} {
		var buf bytes.Buffer
		fw := NewFrameWriter(&buf)
		if err := fw.WriteDrop(name); err == nil {
			t.Fatalf("drop frame for %q written", name)
		}
		if err := fw.WriteLTX(name, strings.NewReader(""), 0); err == nil {
			t.Fatalf("ltx frame for %q written", name)
		}
		if buf.Len() != 0 {
			t.Fatalf("%d bytes written for a refused frame", buf.Len())
		}
	}
}
