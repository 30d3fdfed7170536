package backup

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/superfly/ltx"
)

// countingReader and countingWriter count the calls that reach them: in a
// restore, each one is a system call on a file or pipe.
type countingReader struct {
	r     io.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) { c.calls++; return c.r.Read(p) }

type countingWriter struct {
	w     io.Writer
	calls int
}

func (c *countingWriter) Write(p []byte) (int, error) { c.calls++; return c.w.Write(p) }

// testSnapshot encodes a snapshot LTX file of n random (incompressible)
// 4 KiB pages and returns it with the database file it decodes to.
func testSnapshot(t *testing.T, n int) (file, db []byte) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	hdr := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: uint32(n), MinTXID: 1, MaxTXID: 1, Timestamp: 1}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	sum := ltx.ChecksumFlag
	for pgno := uint32(1); pgno <= uint32(n); pgno++ {
		page := make([]byte, hdr.PageSize)
		for i := range page {
			page[i] = byte(r.Uint32())
		}
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
			t.Fatal(err)
		}
		sum = ltx.ChecksumFlag | (sum ^ ltx.ChecksumPage(pgno, page))
		db = append(db, page...)
	}
	enc.SetPostApplyChecksum(sum)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), db
}

// A restore decodes every page of the database: one read and one write
// call per page made the system calls most of its time, so both sides are
// buffered (ioBufferSize).
func TestWriteDatabase_ReadsAndWritesInLargeChunks(t *testing.T) {
	const pages = 512 // 2 MiB: two buffers' worth
	file, want := testSnapshot(t, pages)
	in := &countingReader{r: bytes.NewReader(file)}
	var got bytes.Buffer
	out := &countingWriter{w: &got}
	if err := writeDatabase(in, out); err != nil {
		t.Fatalf("writeDatabase: %v", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("decoded database differs from the pages encoded (%d bytes, want %d)", got.Len(), len(want))
	}
	// 2 MiB in 1 MiB buffers: a handful of calls, not one or more per page.
	if in.calls > 8 || out.calls > 8 {
		t.Fatalf("%d pages took %d reads and %d writes; want at most 8 of each", pages, in.calls, out.calls)
	}
}
