package proxy

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"testing"
)

// closingBody is a client body as net/http's server hands it over: once
// closed (the server does it when the response headers are written), a
// read fails.
type closingBody struct {
	r      io.Reader
	closed bool
	reads  int
}

var errReadAfterClose = errors.New("http: invalid Read on closed Body")

func (b *closingBody) Read(p []byte) (int, error) {
	b.reads++
	if b.closed {
		return 0, errReadAfterClose
	}
	return b.r.Read(p)
}

func (b *closingBody) Close() error { b.closed = true; return nil }

// TestSizedBody_EOFAfterDeclaredLengthWithoutReadingTheClosedBody: after
// the declared length the Transport's extra read gets io.EOF even though
// the client's body was closed meanwhile, and the bytes are intact.
func TestSizedBody_EOFAfterDeclaredLengthWithoutReadingTheClosedBody(t *testing.T) {
	for _, tt := range []struct {
		name string
		body string
		buf  int
	}{
		{"small body, large buffer", "bench", 512},
		{"body read in pieces", strings.Repeat("x", 10000), 333},
		{"buffer the body's size", "exact", 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := &closingBody{r: strings.NewReader(tt.body)}
			b := &sizedBody{rc: in, left: int64(len(tt.body))}
			var got strings.Builder
			buf := make([]byte, tt.buf)
			for {
				n, err := b.Read(buf)
				got.Write(buf[:n])
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("read: %v", err)
				}
			}
			if got.String() != tt.body {
				t.Fatalf("read %d bytes, want the %d of the body", got.Len(), len(tt.body))
			}
			in.closed = true // the server wrote the response headers
			if n, err := b.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("read after the declared length: %d, %v; want 0, io.EOF", n, err)
			}
		})
	}
}

// TestBoundOutBody_OnlyBodiesOfKnownLength: a chunked body (length -1)
// and an empty one are left as they are.
func TestBoundOutBody_OnlyBodiesOfKnownLength(t *testing.T) {
	for _, tt := range []struct {
		name    string
		length  int64
		body    io.ReadCloser
		wrapped bool
	}{
		{"known length", 5, io.NopCloser(strings.NewReader("bench")), true},
		{"chunked", -1, io.NopCloser(strings.NewReader("bench")), false},
		{"no body", 0, http.NoBody, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := httptest.NewRequest(http.MethodPost, "http://app/items", nil)
			out.Body, out.ContentLength = tt.body, tt.length
			boundOutBody(&httputil.ProxyRequest{In: out, Out: out})
			if _, ok := out.Body.(*sizedBody); ok != tt.wrapped {
				t.Fatalf("body wrapped: %t, want %t", ok, tt.wrapped)
			}
		})
	}
}
