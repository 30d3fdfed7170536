package litefs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/litefs/litefs/internal/crc64iso"
	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// snapDecPages returns pages 1..commit, skipping the lock page. kind is
// "random" (incompressible), "text" (compressible) or "mixed" (every third
// page random).
func snapDecPages(hdr ltx.Header, kind string, seed uint64) []snapEncPage {
	rnd := rand.New(rand.NewPCG(seed, uint64(hdr.PageSize)))
	var pages []snapEncPage
	for pgno := uint32(1); pgno <= hdr.Commit; pgno++ {
		if pgno == hdr.LockPgno() {
			continue
		}
		data := make([]byte, hdr.PageSize)
		if kind == "random" || (kind == "mixed" && pgno%3 == 0) {
			for i := 0; i < len(data); i += 8 {
				binary.LittleEndian.PutUint64(data[i:], rnd.Uint64())
			}
		} else {
			s := fmt.Sprintf("row %d of %d: some compressible text; ", pgno, rnd.IntN(1000))
			copy(data, strings.Repeat(s, len(data)/len(s)+1))
		}
		pages = append(pages, snapEncPage{pgno, data})
	}
	return pages
}

// snapDecPostApply returns the post-apply checksum of pages for hdr.
func snapDecPostApply(hdr ltx.Header, pages []snapEncPage) ltx.Checksum {
	if hdr.NoChecksum() {
		return 0
	}
	chksum := ltx.ChecksumFlag
	for _, p := range pages {
		chksum = ltx.ChecksumFlag | (chksum ^ ltx.ChecksumPage(p.pgno, p.data))
	}
	return chksum
}

// snapDecWriteStock writes pages with the stock ltx encoder.
func snapDecWriteStock(tb testing.TB, hdr ltx.Header, pages []snapEncPage) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		tb.Fatal(err)
	}
	for _, p := range pages {
		if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
			tb.Fatal(err)
		}
	}
	enc.SetPostApplyChecksum(snapDecPostApply(hdr, pages))
	if err := enc.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// snapDecWriteOwn writes pages with newSnapshotEncoder.
func snapDecWriteOwn(tb testing.TB, hdr ltx.Header, pages []snapEncPage, compress bool) []byte {
	tb.Helper()
	var buf bytes.Buffer
	e, err := newSnapshotEncoder(&buf, hdr, compress)
	if err != nil {
		tb.Fatal(err)
	}
	defer e.abort()
	for _, p := range pages {
		if err := e.encodePage(p.pgno, p.data); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := e.close(snapDecPostApply(hdr, pages)); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// snapDecDecode decodes b with decodeSnapshotLTX, copying the pages.
func snapDecDecode(b []byte) (ltx.Header, ltx.Trailer, []snapEncPage, error) {
	var pages []snapEncPage
	hdr, trailer, err := decodeSnapshotLTX(bytes.NewReader(b), func(h ltx.Header, pgno uint32, data []byte) error {
		pages = append(pages, snapEncPage{pgno, bytes.Clone(data)})
		return nil
	})
	return hdr, trailer, pages, err
}

// snapDecDecodeStock verifies b with the stock decoder as a reader of a
// snapshot would: header, pages, Close.
func snapDecDecodeStock(b []byte) (ltx.Trailer, error) {
	dec := ltx.NewDecoder(bytes.NewReader(b))
	if err := dec.DecodeHeader(); err != nil {
		return ltx.Trailer{}, err
	}
	data := make([]byte, dec.Header().PageSize)
	for {
		var ph ltx.PageHeader
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			return ltx.Trailer{}, err
		}
	}
	if err := dec.Close(); err != nil {
		return ltx.Trailer{}, err
	}
	return dec.Trailer(), nil
}

// snapDecEqualPages reports how got differs from want, or "" if it does not.
func snapDecEqualPages(got, want []snapEncPage) string {
	if len(got) != len(want) {
		return fmt.Sprintf("decoded %d pages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].pgno != want[i].pgno || !bytes.Equal(got[i].data, want[i].data) {
			return fmt.Sprintf("entry %d: decoded page %d, want page %d (or data differs)", i, got[i].pgno, want[i].pgno)
		}
	}
	return ""
}

// snapDecWriters are the ways test files are written.
var snapDecWriters = []struct {
	name  string
	write func(testing.TB, ltx.Header, []snapEncPage) []byte
}{
	{"stock", snapDecWriteStock},
	{"own-literal", func(tb testing.TB, h ltx.Header, p []snapEncPage) []byte { return snapDecWriteOwn(tb, h, p, false) }},
	{"own-compress", func(tb testing.TB, h ltx.Header, p []snapEncPage) []byte { return snapDecWriteOwn(tb, h, p, true) }},
}

func TestSnapshotDecoder_ReadsStockAndOwnEncoderOutput(t *testing.T) {
	for _, tt := range []struct {
		pageSize, commit uint32
		kind             string
	}{
		{512, 50, "random"}, {512, 50, "text"}, {512, 1, "mixed"},
		{4096, 30, "random"}, {4096, 30, "text"}, {4096, 30, "mixed"},
		{65536, 5, "random"}, {65536, 5, "text"}, {65536, 0, "mixed"},
	} {
		hdr := snapEncHeader(tt.pageSize, tt.commit)
		pages := snapDecPages(hdr, tt.kind, 1)
		for _, w := range snapDecWriters {
			t.Run(fmt.Sprintf("%s/pageSize=%d/commit=%d/%s", w.name, tt.pageSize, tt.commit, tt.kind), func(t *testing.T) {
				b := w.write(t, hdr, pages)
				snapDecCheckRoundTrip(t, b, hdr, pages, snapDecPostApply(hdr, pages))
			})
		}
	}
}

func TestSnapshotDecoder_SkipsLockPage(t *testing.T) {
	hdr := snapEncHeader(65536, ltx.LockPgno(65536)+2)
	hdr.Flags = ltx.HeaderFlagNoChecksum
	b := snapDecZeroSnapshot(t, hdr)
	want, zero := uint32(1), make([]byte, hdr.PageSize)
	gotHdr, trailer, err := decodeSnapshotLTX(bytes.NewReader(b), func(_ ltx.Header, pgno uint32, data []byte) error {
		if want == hdr.LockPgno() {
			want++
		}
		if pgno != want || !bytes.Equal(data, zero) {
			return fmt.Errorf("got page %d, want zero page %d", pgno, want)
		}
		want++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	} else if gotHdr != hdr || want != hdr.Commit+1 {
		t.Fatalf("header %+v after page %d, want %+v after page %d", gotHdr, want-1, hdr, hdr.Commit)
	}
	if testing.Short() || snapDecRaceEnabled() {
		return // the stock decoder takes 5-15 s over 1 GiB under -race
	}
	if stockTrailer, err := snapDecDecodeStock(b); err != nil {
		t.Fatalf("stock decoder: %v", err)
	} else if trailer != stockTrailer {
		t.Fatalf("trailer %+v, stock decoder reports %+v", trailer, stockTrailer)
	}
}

// snapDecRaceEnabled reports whether the test binary was built with -race.
func snapDecRaceEnabled() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}

// snapDecZeroSnapshot returns a snapshot of zero pages 1..hdr.Commit,
// without the lock page and with no post-apply checksum. Crossing the lock
// page takes 1 GiB of pages, so the file is assembled from one LZ4 block
// rather than compressing every page (which is slow under -race).
func snapDecZeroSnapshot(tb testing.TB, hdr ltx.Header) []byte {
	zero := make([]byte, hdr.PageSize)
	block := make([]byte, lz4.CompressBlockBound(len(zero)))
	n, err := lz4.CompressBlock(zero, block, nil)
	if err != nil || n == 0 {
		tb.Fatalf("compress zero page: %d bytes, %v", n, err)
	}
	block = block[:n]
	b, _ := hdr.MarshalBinary()
	crc := crc64iso.Update(0, b)
	var index []byte
	for pgno := uint32(1); pgno <= hdr.Commit; pgno++ {
		if pgno == hdr.LockPgno() {
			continue
		}
		start := len(b)
		b = binary.BigEndian.AppendUint32(b, pgno)
		b = binary.BigEndian.AppendUint16(b, ltx.PageHeaderFlagSize)
		b = binary.BigEndian.AppendUint32(b, uint32(len(block)))
		crc = crc64iso.Update(crc64iso.Update(crc, b[start:]), zero)
		b = append(b, block...)
		index = binary.AppendUvarint(index, uint64(pgno))
		index = binary.AppendUvarint(index, uint64(start))
		index = binary.AppendUvarint(index, uint64(len(b)-start))
	}
	start := len(b)
	b = append(b, make([]byte, ltx.PageHeaderSize)...)
	b = append(append(b, index...), 0)
	b = binary.BigEndian.AppendUint64(b, uint64(len(index)+1))
	b = binary.BigEndian.AppendUint64(b, 0) // no post-apply checksum
	crc = crc64iso.Update(crc, b[start:])
	return binary.BigEndian.AppendUint64(b, uint64(ltx.ChecksumFlag|ltx.Checksum(crc)))
}

// snapDecCheckRoundTrip decodes b and checks the header, pages and trailer
// against what was written and against the stock decoder.
func snapDecCheckRoundTrip(t *testing.T, b []byte, hdr ltx.Header, pages []snapEncPage, postApply ltx.Checksum) {
	t.Helper()
	gotHdr, gotTrailer, got, err := snapDecDecode(b)
	if err != nil {
		t.Fatal(err)
	} else if gotHdr != hdr {
		t.Fatalf("header %+v, want %+v", gotHdr, hdr)
	} else if diff := snapDecEqualPages(got, pages); diff != "" {
		t.Fatal(diff)
	}
	var written ltx.Trailer
	if err := written.UnmarshalBinary(b[len(b)-ltx.TrailerSize:]); err != nil {
		t.Fatal(err)
	} else if written.PostApplyChecksum != postApply {
		t.Fatalf("written post-apply checksum %s, want %s", written.PostApplyChecksum, postApply)
	} else if gotTrailer != written {
		t.Fatalf("trailer %+v, written %+v", gotTrailer, written)
	}
	if stockTrailer, err := snapDecDecodeStock(b); err != nil {
		t.Fatalf("stock decoder: %v", err)
	} else if gotTrailer != stockTrailer {
		t.Fatalf("trailer %+v, stock decoder reports %+v", gotTrailer, stockTrailer)
	}
}

// snapDecRegion is a named byte range of a snapshot file.
type snapDecRegion struct {
	name       string
	start, end int
}

// snapDecRegions splits a good snapshot file into its parts.
func snapDecRegions(tb testing.TB, b []byte) []snapDecRegion {
	tb.Helper()
	var hdr ltx.Header
	if err := hdr.UnmarshalBinary(b); err != nil {
		tb.Fatal(err)
	}
	r := []snapDecRegion{{"header", 0, ltx.HeaderSize}}
	off := ltx.HeaderSize
	for binary.BigEndian.Uint32(b[off:]) != 0 {
		pgno, size := binary.BigEndian.Uint32(b[off:]), int(binary.BigEndian.Uint32(b[off+6:]))
		r = append(r,
			snapDecRegion{fmt.Sprintf("page %d header", pgno), off, off + ltx.PageHeaderSize},
			snapDecRegion{fmt.Sprintf("page %d block size", pgno), off + ltx.PageHeaderSize, off + 10},
			snapDecRegion{fmt.Sprintf("page %d block", pgno), off + 10, off + 10 + size})
		off += 10 + size
	}
	n := len(b) - ltx.TrailerSize
	return append(r,
		snapDecRegion{"end-of-pages header", off, off + ltx.PageHeaderSize},
		snapDecRegion{"page index", off + ltx.PageHeaderSize, n - 8},
		snapDecRegion{"page index size", n - 8, n},
		snapDecRegion{"trailer post-apply checksum", n, n + 8},
		snapDecRegion{"file checksum", n + 8, len(b)})
}

// snapDecPositions returns the positions to damage (or cut the file at) in
// r: every byte, or a sample of the bytes of a block.
func snapDecPositions(r snapDecRegion) []int {
	if !strings.HasSuffix(r.name, " block") {
		var a []int
		for i := r.start; i < r.end; i++ {
			a = append(a, i)
		}
		return a
	}
	return []int{r.start, r.start + 1, r.start + 2, (r.start + r.end) / 2, r.end - 2, r.end - 1}
}

// snapDecStockAccepts reports whether the stock decoder accepts b, damaged
// in r. The stock decoder allocates a page's claimed block size before
// reading the block, up to 4 GiB, which takes seconds; a claimed block
// larger than the rest of the file cannot be read, so it refuses such a
// file, and it is not run on one.
func snapDecStockAccepts(b []byte, r snapDecRegion) bool {
	if strings.HasSuffix(r.name, " block size") && int(binary.BigEndian.Uint32(b[r.start:])) > len(b)-r.end {
		return false
	}
	_, err := snapDecDecodeStock(b)
	return err == nil
}

func TestSnapshotDecoder_RefusesDamagedFiles(t *testing.T) {
	hdr := snapEncHeader(512, 4)
	pages := snapDecPages(hdr, "mixed", 2)
	t.Run("non-snapshot header", func(t *testing.T) {
		h := hdr
		h.MinTXID, h.MaxTXID, h.PreApplyChecksum = 2, 3, ltx.ChecksumFlag|1
		b := snapDecWriteStock(t, h, pages)
		if _, _, _, err := snapDecDecode(b); err == nil || !strings.Contains(err.Error(), "snapshot ltx: header: min txid is 2") {
			t.Fatalf("got error %v, want min txid 2 refused", err)
		}
	})
	for _, w := range snapDecWriters {
		good := w.write(t, hdr, pages)
		t.Run(w.name+"/flipped byte", func(t *testing.T) {
			for _, r := range snapDecRegions(t, good) {
				for _, pos := range snapDecPositions(r) {
					for _, mask := range []byte{0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFF} {
						b := bytes.Clone(good)
						b[pos] ^= mask
						_, _, _, err := snapDecDecode(b)
						if err == nil || !strings.HasPrefix(err.Error(), "snapshot ltx: ") {
							t.Errorf("%s: byte %d ^ %#02x: got error %v", r.name, pos, mask, err)
						} else if snapDecStockAccepts(b, r) {
							t.Errorf("%s: byte %d ^ %#02x: stock decoder accepts what we refuse: %v", r.name, pos, mask, err)
						}
					}
				}
			}
		})
		t.Run(w.name+"/truncated", func(t *testing.T) {
			var cuts []int
			for _, r := range snapDecRegions(t, good) {
				cuts = append(cuts, snapDecPositions(r)...)
			}
			for _, n := range cuts {
				if _, _, _, err := snapDecDecode(good[:n]); !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("cut to %d of %d bytes: got error %v, want unexpected EOF", n, len(good), err)
				} else if _, stockErr := snapDecDecodeStock(good[:n]); stockErr == nil {
					t.Errorf("cut to %d of %d bytes: stock decoder accepts what we refuse: %v", n, len(good), err)
				}
			}
		})
		t.Run(w.name+"/appended byte", func(t *testing.T) {
			b := append(bytes.Clone(good), 0)
			if _, _, _, err := snapDecDecode(b); err == nil || !strings.Contains(err.Error(), "after trailer") {
				t.Errorf("got error %v, want data after trailer", err)
			} else if _, stockErr := snapDecDecodeStock(b); stockErr == nil {
				t.Errorf("stock decoder accepts what we refuse: %v", err)
			}
		})
	}
}

// snapDecFind returns the region of b named name.
func snapDecFind(tb testing.TB, b []byte, name string) snapDecRegion {
	tb.Helper()
	for _, r := range snapDecRegions(tb, b) {
		if r.name == name {
			return r
		}
	}
	tb.Fatalf("no region %q", name)
	return snapDecRegion{}
}

// snapDecEntry is a page index entry.
type snapDecEntry struct{ pgno, offset, size uint64 }

// snapDecEditIndex returns a copy of b whose page index is replaced by what
// edit returns for its entries, with the index size set to match. The file
// checksum is left as it was.
func snapDecEditIndex(tb testing.TB, b []byte, edit func([]snapDecEntry) []snapDecEntry) []byte {
	tb.Helper()
	r := snapDecFind(tb, b, "page index")
	var entries []snapDecEntry
	for p := b[r.start:r.end]; p[0] != 0; {
		var v [3]uint64
		for i := range v {
			x, n := binary.Uvarint(p)
			v[i], p = x, p[n:]
		}
		entries = append(entries, snapDecEntry{v[0], v[1], v[2]})
	}
	var index []byte
	for _, e := range edit(entries) {
		index = binary.AppendUvarint(index, e.pgno)
		index = binary.AppendUvarint(index, e.offset)
		index = binary.AppendUvarint(index, e.size)
	}
	index = append(index, 0)
	out := append(bytes.Clone(b[:r.start]), index...)
	out = binary.BigEndian.AppendUint64(out, uint64(len(index)))
	return append(out, b[r.end+8:]...)
}

func TestSnapshotDecoder_ErrorsNameTheFault(t *testing.T) {
	hdr := snapEncHeader(512, 4)
	pages := snapDecPages(hdr, "mixed", 3)
	literal := snapDecWriteOwn(t, hdr, pages, false)
	compressed := snapDecWriteOwn(t, hdr, pages, true)
	boom := errors.New("boom")
	put32 := func(b []byte, region string, off int, v uint32) []byte {
		b = bytes.Clone(b)
		binary.BigEndian.PutUint32(b[snapDecFind(t, b, region).start+off:], v)
		return b
	}
	put16 := func(b []byte, region string, off int, v uint16) []byte {
		b = bytes.Clone(b)
		binary.BigEndian.PutUint16(b[snapDecFind(t, b, region).start+off:], v)
		return b
	}
	for _, tt := range []struct {
		name string
		file []byte
		fail uint32 // page whose callback fails, if any
		want string
		is   error
	}{
		{name: "page out of order", file: put32(literal, "page 2 header", 0, 3), want: "snapshot ltx: page 2: page header has page number 3"},
		{name: "old LZ4-frame format", file: put16(literal, "page 2 header", 4, 0), want: "snapshot ltx: page 2: old LZ4-frame page format"},
		{name: "unknown page flags", file: put16(literal, "page 2 header", 4, 3), want: "snapshot ltx: page 2: invalid page header flags 0x0003"},
		{name: "empty block", file: put32(literal, "page 2 block size", 0, 0), want: "snapshot ltx: page 2: block size 0 out of range 1..530"},
		{name: "block too big", file: put32(literal, "page 2 block size", 0, 531), want: "snapshot ltx: page 2: block size 531 out of range 1..530"},
		{name: "block decompresses short", file: snapDecShortBlock(t, literal), want: "snapshot ltx: page 1: block decompresses to 511 bytes, want 512"},
		{name: "invalid block", file: put32(compressed, "page 1 block", 0, 0xFFFFFFFF), want: "snapshot ltx: page 1: decompress"},
		{name: "page missing", file: put32(literal, "header", 12, 5), want: "snapshot ltx: page 5: end-of-pages header, but commit is 5"},
		{name: "page beyond commit", file: put32(literal, "header", 12, 3), want: "snapshot ltx: end-of-pages header: found header of page 4"},
		{name: "cut short in a block", file: literal[:snapDecFind(t, literal, "page 2 block").start+7], want: "snapshot ltx: page 2: block: ", is: io.ErrUnexpectedEOF},
		{name: "index entry missing", file: snapDecEditIndex(t, literal, func(e []snapDecEntry) []snapDecEntry { return e[:3] }), want: "snapshot ltx: page index: end marker in place of the entry for page 4 of 4"},
		{name: "index entry extra", file: snapDecEditIndex(t, literal, func(e []snapDecEntry) []snapDecEntry { return append(e, e[3]) }), want: "snapshot ltx: page index: entry for page 4 after commit 4"},
		{name: "index page number wrong", file: snapDecEditIndex(t, literal, func(e []snapDecEntry) []snapDecEntry { e[1].pgno = 3; return e }), want: "snapshot ltx: page index: entry for page 3 in place of page 2"},
		{name: "index offset wrong", file: snapDecEditIndex(t, literal, func(e []snapDecEntry) []snapDecEntry { e[2].offset++; return e }), want: "snapshot ltx: page index: page 3: offset"},
		{name: "index size wrong", file: snapDecEditIndex(t, literal, func(e []snapDecEntry) []snapDecEntry { e[3].size--; return e }), want: "snapshot ltx: page index: entries cover frames up to offset"},
		{name: "index sizes swapped", file: snapDecEditIndex(t, compressed, snapDecSwapSizes), want: "snapshot ltx: page index: frame sizes differ"},
		{name: "index size field wrong", file: put32(literal, "page index size", 4, 1), want: "snapshot ltx: page index: index size field is 1"},
		{name: "file checksum wrong", file: put32(literal, "file checksum", 4, 1), want: "snapshot ltx: trailer: file checksum", is: ltx.ErrChecksumMismatch},
		{name: "data after trailer", file: append(bytes.Clone(literal), 0), want: "snapshot ltx: trailer: unexpected data after trailer"},
		{name: "callback fails", file: literal, fail: 3, want: "snapshot ltx: page 3: boom", is: boom},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeSnapshotLTX(bytes.NewReader(tt.file), func(_ ltx.Header, pgno uint32, _ []byte) error {
				if pgno == tt.fail {
					return boom
				}
				return nil
			})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one starting %q", err, tt.want)
			} else if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

// snapDecShortBlock returns a copy of the literal-block file b whose page 1
// block holds one literal fewer (511 of 512 bytes).
func snapDecShortBlock(tb testing.TB, b []byte) []byte {
	tb.Helper()
	r := snapDecFind(tb, b, "page 1 block")
	if !bytes.Equal(b[r.start:r.start+3], []byte{0xF0, 0xFF, 0xF2}) {
		tb.Fatalf("page 1 block starts %x, want a 512-byte literal run", b[r.start:r.start+3])
	}
	out := append(bytes.Clone(b[:r.end-1]), b[r.end:]...)
	out[r.start+2]--
	binary.BigEndian.PutUint32(out[r.start-4:], uint32(r.end-r.start-1))
	return out
}

// snapDecSwapSizes swaps the frame sizes of the first two entries that
// differ in size, moving the offsets in between to match, so that offsets
// and their total stay consistent.
func snapDecSwapSizes(e []snapDecEntry) []snapDecEntry {
	for i := 1; i < len(e); i++ {
		if e[i].size != e[0].size {
			e[0].size, e[i].size = e[i].size, e[0].size
			for j := 1; j <= i; j++ {
				e[j].offset = e[j-1].offset + e[j-1].size
			}
			return e
		}
	}
	panic("all frames have the same size")
}

// snapDecBenchFile returns 64 MiB of random 4096-byte pages written by
// newSnapshotEncoder without compression.
func snapDecBenchFile(b *testing.B) []byte {
	hdr := snapEncHeader(4096, 64<<20/4096)
	return snapDecWriteOwn(b, hdr, snapDecPages(hdr, "random", 4), false)
}

func BenchmarkSnapshotDecoder(b *testing.B) {
	file := snapDecBenchFile(b)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		_, _, err := decodeSnapshotLTX(bytes.NewReader(file), func(ltx.Header, uint32, []byte) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStockDecoder(b *testing.B) {
	file := snapDecBenchFile(b)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := snapDecDecodeStock(file); err != nil {
			b.Fatal(err)
		}
	}
}
