package proxy

import (
	"io"
	"net/http"
	"net/http/httputil"
)

// sizedBody is an outgoing request body of a known length that answers
// io.EOF once that length has been read, without reading the client's
// body again.
//
// net/http's Transport, after sending a body's declared Content-Length,
// reads it once more to check it is not longer. The inbound body it reads
// is the client's: the server closes it when this proxy writes the
// response headers, which can happen first (the upstream answered
// already). That extra read then fails ("invalid Read on closed Body"),
// the Transport tears down the upstream connection, and the response
// being relayed is cut: the client sees a truncated body (an "unexpected
// EOF"). Measured by litefs-bench: about one forwarded POST in a thousand.
type sizedBody struct {
	rc   io.ReadCloser
	left int64
}

// Read reads at most the bytes still declared, then answers io.EOF.
func (b *sizedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err == nil && b.left <= 0 {
		err = io.EOF
	}
	return n, err
}

// Close closes the client's body.
func (b *sizedBody) Close() error { return b.rc.Close() }

// boundOutBody makes a proxied request's body of known length a
// sizedBody. Bodies of unknown length (chunked) are left alone: the
// Transport reads those until their own EOF.
func boundOutBody(pr *httputil.ProxyRequest) {
	out := pr.Out
	if out.Body == nil || out.Body == http.NoBody || out.ContentLength <= 0 {
		return
	}
	out.Body = &sizedBody{rc: out.Body, left: out.ContentLength}
}
