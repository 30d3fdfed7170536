package backup

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/superfly/ltx"
)

// testDB is a database image of 4 KiB pages, for building LTX files.
type testDB struct {
	pages [][]byte // pages[i] is page i+1
	sum   ltx.Checksum
	txid  ltx.TXID
}

const testPageSize = 4096

// commit fills the pages in set with random bytes (every page, for the
// first commit) and sets the database's size to commit pages, then encodes that transaction
// as an LTX file in dir (a snapshot for the first one) and returns it as
// a downloaded file.
func (d *testDB) commit(t *testing.T, r *rand.Rand, dir string, commit uint32, set []uint32) localFile {
	t.Helper()
	pre := d.sum
	if d.txid == 0 { // a snapshot holds every page
		set = pageRange(1, commit)
	}
	for len(d.pages) < int(commit) {
		d.pages = append(d.pages, make([]byte, testPageSize))
	}
	d.pages = d.pages[:commit]
	for _, pgno := range set {
		for i := range d.pages[pgno-1] {
			d.pages[pgno-1][i] = byte(r.Uint32())
		}
	}
	d.sum = ltx.ChecksumFlag
	for i, p := range d.pages {
		d.sum = ltx.ChecksumFlag | (d.sum ^ ltx.ChecksumPage(uint32(i+1), p))
	}
	d.txid++
	hdr := ltx.Header{Version: ltx.Version, PageSize: testPageSize, Commit: commit, MinTXID: d.txid, MaxTXID: d.txid,
		Timestamp: 1, PreApplyChecksum: pre}
	if d.txid == 1 {
		hdr.PreApplyChecksum = 0
	}
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	for _, pgno := range set {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, d.pages[pgno-1]); err != nil {
			t.Fatal(err)
		}
	}
	enc.SetPostApplyChecksum(d.sum)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ltx.FormatFilename(d.txid, d.txid))
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return localFile{path: path, hdr: enc.Header(), trailer: enc.Trailer()}
}

// A restore writes the snapshot, then each later file's pages over it
// (growing and shrinking the database as the files say), and ends with the
// database the last file describes, checksum and all.
func TestDecode_AppliesFilesAfterTheSnapshotInOrder(t *testing.T) {
	type step struct {
		commit uint32
		set    []uint32
	}
	for _, tt := range []struct {
		name  string
		steps []step
	}{
		{"snapshot only", []step{{300, nil}}},
		{"overwrite, runs and single pages", []step{{300, nil}, {300, []uint32{1, 2, 3, 4, 100, 299}}, {300, []uint32{2, 150, 151, 152}}}},
		{"grow past a buffer, then shrink", []step{{10, nil}, {600, pageRange(5, 600)}, {40, []uint32{1, 40}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			r := rand.New(rand.NewPCG(3, 4))
			var db testDB
			var files []localFile
			for _, s := range tt.steps {
				files = append(files, db.commit(t, r, dir, s.commit, s.set))
			}
			out := filepath.Join(dir, "db")
			pos, err := decode(context.Background(), files, out)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if pos.TXID != db.txid || pos.PostApplyChecksum != db.sum {
				t.Fatalf("restored at %s, want %s/%s", pos, db.txid, db.sum)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if want := bytes.Join(db.pages, nil); !bytes.Equal(got, want) {
				t.Fatalf("restored database (%d bytes) differs from the last state (%d bytes)", len(got), len(want))
			}
		})
	}
}

// pageRange returns the page numbers from first to last.
func pageRange(first, last uint32) []uint32 {
	var out []uint32
	for p := first; p <= last; p++ {
		out = append(out, p)
	}
	return out
}

// countingWriterAt counts positioned writes.
type countingWriterAt struct {
	f     *os.File
	calls int
}

func (c *countingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	c.calls++
	return c.f.WriteAt(p, off)
}

// Contiguous pages of a file go to the database in one write each run,
// not one write per page.
func TestApplyLTX_WritesContiguousPagesTogether(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	var db testDB
	snap := db.commit(t, r, dir, 400, nil)
	next := db.commit(t, r, dir, 400, append(pageRange(10, 210), 300, 302))
	out := filepath.Join(dir, "db")
	if _, err := decode(context.Background(), []localFile{snap}, out); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(out, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &countingWriterAt{f: f}
	if err := applyLTX(next.path, w, f.Truncate, testPageSize); err != nil {
		t.Fatal(err)
	}
	// One run of 201 pages, then pages 300 and 302 on their own.
	if w.calls != 3 {
		t.Fatalf("203 pages in 3 runs took %d writes, want 3", w.calls)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, bytes.Join(db.pages, nil)) {
		t.Fatal("database after applyLTX differs from the state it describes")
	}
}
