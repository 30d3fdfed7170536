package litefs

import (
	"io"

	"github.com/superfly/ltx"
)

// encoderCache hands out an LTX encoder per commit without allocating one.
// An ltx.Encoder embeds an LZ4 hash table of about 128 KiB: allocating and
// clearing it for every commit took 45 µs per single-page transaction, plus
// garbage collection, against 10 µs when a fresh encoder is copied over a
// reused one (measured by BenchmarkEncoderCache). The copy resets every field
// of the encoder, including the hash table, to its state after NewEncoder.
// Not safe for concurrent use: a DB uses its cache under db.mu.
type encoderCache struct {
	fresh *ltx.Encoder // made by NewEncoder over out, never used itself
	enc   *ltx.Encoder
	out   redirectWriter
}

// redirectWriter writes to whatever writer the current commit uses.
type redirectWriter struct{ w io.Writer }

func (r *redirectWriter) Write(p []byte) (int, error) { return r.w.Write(p) }

// get returns an encoder in its initial state that writes to w. The
// previous encoder it returned must no longer be in use.
func (c *encoderCache) get(w io.Writer) (*ltx.Encoder, error) {
	if c.fresh == nil {
		fresh, err := ltx.NewEncoder(&c.out)
		if err != nil {
			return nil, err
		}
		c.fresh, c.enc = fresh, new(ltx.Encoder)
	}
	*c.enc = *c.fresh
	c.out.w = w
	return c.enc, nil
}
