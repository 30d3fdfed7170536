package litefs

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pierrec/lz4/v4"
	"github.com/superfly/ltx"
)

// snapEncPage is a page given to, or decoded from, a snapshot.
type snapEncPage struct {
	pgno uint32
	data []byte
}

// snapEncHeader returns a snapshot header for commit pages of pageSize.
func snapEncHeader(pageSize, commit uint32) ltx.Header {
	return ltx.Header{
		Version: ltx.Version, PageSize: pageSize, Commit: commit,
		MinTXID: 1, MaxTXID: 7, Timestamp: 1700000000000,
	}
}

// snapEncRandomPage returns an incompressible page.
func snapEncRandomPage(tb testing.TB, pageSize int) []byte {
	b := make([]byte, pageSize)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

// snapEncTextPage returns a compressible page of repeated text.
func snapEncTextPage(pageSize int, seed uint32) []byte {
	s := fmt.Sprintf("row %d: the quick brown fox jumps over the lazy dog; ", seed)
	return []byte(strings.Repeat(s, pageSize/len(s)+1)[:pageSize])
}

// snapEncPages returns pages 1..commit, skipping lockPgno, where every third
// page is random and the others are text.
func snapEncPages(tb testing.TB, pageSize int, commit, lockPgno uint32) []snapEncPage {
	var pages []snapEncPage
	for pgno := uint32(1); pgno <= commit; pgno++ {
		if pgno == lockPgno {
			continue
		}
		data := snapEncTextPage(pageSize, pgno)
		if pgno%3 == 0 {
			data = snapEncRandomPage(tb, pageSize)
		}
		pages = append(pages, snapEncPage{pgno, data})
	}
	return pages
}

// snapEncPostApply returns the rolling checksum of pages as the decoder computes it.
func snapEncPostApply(pages []snapEncPage) ltx.Checksum {
	chksum := ltx.ChecksumFlag
	for _, p := range pages {
		chksum = ltx.ChecksumFlag | (chksum ^ ltx.ChecksumPage(p.pgno, p.data))
	}
	return chksum
}

// snapEncEncode encodes pages with a new encoder, applying opt to it first,
// and returns the file and the size close reported.
func snapEncEncode(t *testing.T, hdr ltx.Header, compress bool, pages []snapEncPage, opt func(*snapshotEncoder)) ([]byte, int64) {
	t.Helper()
	var buf bytes.Buffer
	e, err := newSnapshotEncoder(&buf, hdr, compress)
	if err != nil {
		t.Fatal(err)
	}
	defer e.abort()
	if opt != nil {
		opt(e)
	}
	for _, p := range pages {
		if err := e.encodePage(p.pgno, p.data); err != nil {
			t.Fatal(err)
		}
	}
	n, err := e.close(snapEncPostApply(pages))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), n
}

// snapEncDecode decodes b with the stock decoder, failing the test unless
// the file verifies.
func snapEncDecode(t *testing.T, b []byte) (*ltx.Decoder, []snapEncPage) {
	t.Helper()
	dec := ltx.NewDecoder(bytes.NewReader(b))
	if err := dec.DecodeHeader(); err != nil {
		t.Fatalf("decode header: %v", err)
	}
	var pages []snapEncPage
	for {
		var ph ltx.PageHeader
		data := make([]byte, dec.Header().PageSize)
		if err := dec.DecodePage(&ph, data); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode page %d: %v", len(pages)+1, err)
		}
		pages = append(pages, snapEncPage{ph.Pgno, data})
	}
	if err := dec.Close(); err != nil {
		t.Fatalf("close decoder: %v", err)
	}
	return dec, pages
}

// snapEncCheckPages fails the test unless got equals want.
func snapEncCheckPages(t *testing.T, got, want []snapEncPage) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("decoded %d pages, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].pgno != want[i].pgno || !bytes.Equal(got[i].data, want[i].data) {
			t.Fatalf("page %d: decoded pgno %d with different data or number", want[i].pgno, got[i].pgno)
		}
	}
}

func TestSnapshotEncoder_DecodesWithStockDecoder(t *testing.T) {
	for _, tt := range []struct {
		pageSize, commit uint32
	}{{512, 1500}, {4096, 200}, {65536, 12}, {4096, 1}} {
		pages := snapEncPages(t, int(tt.pageSize), tt.commit, ltx.LockPgno(tt.pageSize))
		sizes := map[bool]int{}
		for _, compress := range []bool{false, true} {
			t.Run(fmt.Sprintf("pageSize=%d/commit=%d/compress=%v", tt.pageSize, tt.commit, compress), func(t *testing.T) {
				hdr := snapEncHeader(tt.pageSize, tt.commit)
				b, n := snapEncEncode(t, hdr, compress, pages, nil)
				if n != int64(len(b)) {
					t.Fatalf("close returned size %d, wrote %d bytes", n, len(b))
				}
				dec, got := snapEncDecode(t, b)
				if dec.Header() != hdr {
					t.Fatalf("header %+v, want %+v", dec.Header(), hdr)
				}
				snapEncCheckPages(t, got, pages)
				if got, want := dec.Trailer().PostApplyChecksum, snapEncPostApply(pages); got != want {
					t.Fatalf("post-apply checksum %s, want %s", got, want)
				}
				sizes[compress] = len(b)
			})
		}
		if tt.commit > 1 && sizes[true] >= sizes[false] {
			t.Errorf("pageSize=%d: compressed file %d bytes, literal %d", tt.pageSize, sizes[true], sizes[false])
		}
	}
}

func TestSnapshotEncoder_SkipsLockPage(t *testing.T) {
	// Lock pages are at 1 GiB, too far to reach in a test, so the encoder's
	// lock page is moved to 5; the decoder checks nothing about it.
	for _, commit := range []uint32{5, 9} {
		t.Run(fmt.Sprintf("commit=%d", commit), func(t *testing.T) {
			pages := snapEncPages(t, 4096, commit, 5)
			b, _ := snapEncEncode(t, snapEncHeader(4096, commit), true, pages, func(e *snapshotEncoder) {
				if e.lockPgno != ltx.LockPgno(4096) {
					t.Fatalf("lock page %d, want %d", e.lockPgno, ltx.LockPgno(4096))
				}
				e.lockPgno = 5
			})
			_, got := snapEncDecode(t, b)
			snapEncCheckPages(t, got, pages)
		})
	}
}

func TestSnapshotEncoder_RefusesInvalidPages(t *testing.T) {
	const commit, lock = 9, 5
	pages := snapEncPages(t, 512, commit, lock)
	for _, tt := range []struct {
		name   string
		given  int // valid pages given first
		pgno   uint32
		size   int
		errMsg string
	}{
		{"FirstPageNotOne", 0, 2, 512, "page 2 out of sequence, want page 1"},
		{"PageZero", 0, 0, 512, "page 0 out of sequence"},
		{"RepeatedPage", 2, 2, 512, "page 2 out of sequence, want page 3"},
		{"Gap", 2, 4, 512, "page 4 out of sequence, want page 3"},
		{"LockPage", 4, lock, 512, "page 5 is the lock page"},
		{"BeyondCommit", len(pages), commit + 1, 512, "page 10 beyond commit 9"},
		{"ShortData", 0, 1, 100, "page 1 is 100 bytes, want 512"},
		{"LongData", 1, 2, 513, "page 2 is 513 bytes, want 512"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			e, err := newSnapshotEncoder(&buf, snapEncHeader(512, commit), false)
			if err != nil {
				t.Fatal(err)
			}
			defer e.abort()
			e.lockPgno = lock
			for i, p := range pages {
				if i == tt.given {
					err := e.encodePage(tt.pgno, make([]byte, tt.size))
					if err == nil || !strings.Contains(err.Error(), tt.errMsg) {
						t.Fatalf("encodePage error %v, want %q", err, tt.errMsg)
					}
				}
				if err := e.encodePage(p.pgno, p.data); err != nil {
					t.Fatalf("after refusal: %v", err)
				}
			}
			if tt.given == len(pages) {
				if err := e.encodePage(tt.pgno, make([]byte, tt.size)); err == nil || !strings.Contains(err.Error(), tt.errMsg) {
					t.Fatalf("encodePage error %v, want %q", err, tt.errMsg)
				}
			}
			if _, err := e.close(snapEncPostApply(pages)); err != nil {
				t.Fatal(err)
			}
			_, got := snapEncDecode(t, buf.Bytes())
			snapEncCheckPages(t, got, pages)
		})
	}
}

func TestSnapshotEncoder_RejectsInvalidHeader(t *testing.T) {
	for _, tt := range []struct {
		name   string
		modify func(*ltx.Header)
		errMsg string
	}{
		{"NotSnapshot", func(h *ltx.Header) { h.MinTXID = 2 }, "min txid is 2, want 1"},
		{"BadPageSize", func(h *ltx.Header) { h.PageSize = 1000 }, "invalid page size"},
		{"NoVersion", func(h *ltx.Header) { h.Version = 0 }, "invalid version"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hdr := snapEncHeader(4096, 3)
			tt.modify(&hdr)
			if _, err := newSnapshotEncoder(io.Discard, hdr, true); err == nil || !strings.Contains(err.Error(), tt.errMsg) {
				t.Fatalf("error %v, want %q", err, tt.errMsg)
			}
		})
	}
}

func TestSnapshotEncoder_CloseRefusesMissingPages(t *testing.T) {
	pages := snapEncPages(t, 4096, 9, 0)
	var buf bytes.Buffer
	e, err := newSnapshotEncoder(&buf, snapEncHeader(4096, 9), false)
	if err != nil {
		t.Fatal(err)
	}
	defer e.abort()
	for _, p := range pages[:3] {
		if err := e.encodePage(p.pgno, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.close(snapEncPostApply(pages)); err == nil || !strings.Contains(err.Error(), "close after page 3 of 9") {
		t.Fatalf("close error %v, want missing pages", err)
	}
	for _, p := range pages[3:] {
		if err := e.encodePage(p.pgno, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.close(0); err == nil || !strings.Contains(err.Error(), "invalid post-apply checksum") {
		t.Fatalf("close error %v, want invalid post-apply checksum", err)
	}
	if _, err := e.close(snapEncPostApply(pages)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.close(snapEncPostApply(pages)); err == nil {
		t.Fatal("second close succeeded")
	}
	_, got := snapEncDecode(t, buf.Bytes())
	snapEncCheckPages(t, got, pages)
}

// snapEncFailingWriter accepts n bytes and then fails.
type snapEncFailingWriter struct{ n int }

var errSnapEncWrite = errors.New("disk on fire")

func (w *snapEncFailingWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errSnapEncWrite
	}
	w.n -= len(p)
	return len(p), nil
}

// snapEncWaitGoroutines fails the test unless the goroutine count falls to base.
func snapEncWaitGoroutines(t *testing.T, base int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, want %d", runtime.NumGoroutine(), base)
		}
	}
}

func TestSnapshotEncoder_ReportsWriteError(t *testing.T) {
	pages := snapEncPages(t, 4096, 200, 0)
	full, _ := snapEncEncode(t, snapEncHeader(4096, 200), false, pages, nil)
	for _, failAfter := range []int{0, 50, 1000, 300 << 10, len(full) - 100, len(full) - 4} {
		t.Run(fmt.Sprintf("failAfter=%d", failAfter), func(t *testing.T) {
			base := runtime.NumGoroutine()
			e, err := newSnapshotEncoder(&snapEncFailingWriter{n: failAfter}, snapEncHeader(4096, 200), false)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pages {
				if err = e.encodePage(p.pgno, p.data); err != nil {
					break
				}
			}
			if err == nil {
				_, err = e.close(snapEncPostApply(pages))
			}
			if !errors.Is(err, errSnapEncWrite) || !strings.Contains(err.Error(), "disk on fire") {
				t.Fatalf("error %v, want %v", err, errSnapEncWrite)
			}
			select {
			case <-e.aw.done:
			default:
				t.Fatal("writer goroutine still running after the error")
			}
			if err := e.encodePage(1, pages[0].data); !errors.Is(err, errSnapEncWrite) {
				t.Fatalf("encodePage after failure: %v", err)
			}
			e.abort()
			snapEncWaitGoroutines(t, base)
		})
	}
}

func TestSnapshotEncoder_NextEncodePageReportsWriteError(t *testing.T) {
	pages := snapEncPages(t, 4096, 200, 0)
	e, err := newSnapshotEncoder(&snapEncFailingWriter{}, snapEncHeader(4096, 200), false)
	if err != nil {
		t.Fatal(err)
	}
	defer e.abort()
	i := 0
	for ; e.n < asyncChunkSize; i++ { // until a chunk is handed over
		if err := e.encodePage(pages[i].pgno, pages[i].data); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); e.aw.firstErr() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("writer goroutine did not report the write error")
		}
	}
	if err := e.encodePage(pages[i].pgno, pages[i].data); !errors.Is(err, errSnapEncWrite) {
		t.Fatalf("encodePage error %v, want %v", err, errSnapEncWrite)
	}
	select {
	case <-e.aw.done:
	default:
		t.Fatal("writer goroutine still running after the error")
	}
}

func TestSnapshotEncoder_AbortStopsWriter(t *testing.T) {
	pages := snapEncPages(t, 4096, 200, 0)
	for _, closeFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("closeFirst=%v", closeFirst), func(t *testing.T) {
			base := runtime.NumGoroutine()
			var buf bytes.Buffer
			e, err := newSnapshotEncoder(&buf, snapEncHeader(4096, 200), false)
			if err != nil {
				t.Fatal(err)
			}
			n := len(pages)
			if !closeFirst {
				n = 150
			}
			for _, p := range pages[:n] {
				if err := e.encodePage(p.pgno, p.data); err != nil {
					t.Fatal(err)
				}
			}
			if closeFirst {
				if _, err := e.close(snapEncPostApply(pages)); err != nil {
					t.Fatal(err)
				}
			}
			e.abort()
			e.abort()
			<-e.aw.done
			snapEncWaitGoroutines(t, base)
			if err := e.encodePage(uint32(n+1), pages[0].data); err == nil {
				t.Fatal("encodePage after abort succeeded")
			}
			if closeFirst {
				snapEncDecode(t, buf.Bytes())
			} else if _, err := e.close(snapEncPostApply(pages)); err == nil || !strings.Contains(err.Error(), "aborted") {
				t.Fatalf("close after abort: %v", err)
			}
		})
	}
}

func TestSnapshotEncoder_AdaptiveCompressionSkipping(t *testing.T) {
	// Pages 1-8 and 40 are random but for a zero tail (a SQLite page holding
	// a random blob: LZ4 saves a few bytes, too few to count), the rest
	// text. Pages 9-39 follow 8 misses and are not tried; page 40 is tried
	// and fails, so 41-71 are not tried either; page 72 is tried,
	// compresses, and compression resumes.
	const pageSize, commit = 4096, 80
	var pages []snapEncPage
	for pgno := uint32(1); pgno <= commit; pgno++ {
		data := snapEncTextPage(pageSize, pgno)
		if pgno <= 8 || pgno == 40 {
			data = snapEncRandomPage(t, pageSize)
			clear(data[pageSize-96:])
		}
		pages = append(pages, snapEncPage{pgno, data})
	}
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			b, _ := snapEncEncode(t, snapEncHeader(pageSize, commit), compress, pages, nil)
			dec, got := snapEncDecode(t, b)
			snapEncCheckPages(t, got, pages)
			literal := int64(snapEncFrameHdr + len(appendLiteralPrefix(nil, pageSize)) + pageSize)
			for pgno, elem := range dec.PageIndex() {
				if want := compress && pgno >= 72; (elem.Size < literal) != want {
					t.Errorf("page %d: frame size %d, compressed=%v, want %v", pgno, elem.Size, elem.Size < literal, want)
				}
			}
		})
	}
}

func TestSnapshotEncoder_LiteralBlockDecodesWithLZ4(t *testing.T) {
	for _, n := range []int{15, 16, 269, 270, 271, 525, 512, 4096, 65536} {
		data := snapEncRandomPage(t, n)
		block := append(appendLiteralPrefix(nil, n), data...)
		dst := make([]byte, n)
		if got, err := lz4.UncompressBlock(block, dst); err != nil || got != n || !bytes.Equal(dst, data) {
			t.Fatalf("n=%d: uncompressed %d bytes, err %v, equal=%v", n, got, err, bytes.Equal(dst, data))
		}
	}
}

func TestSnapshotEncoder_NoAllocationPerPage(t *testing.T) {
	random, text := snapEncRandomPage(t, 4096), snapEncTextPage(4096, 1)
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			e, err := newSnapshotEncoder(io.Discard, snapEncHeader(4096, 5000), compress)
			if err != nil {
				t.Fatal(err)
			}
			defer e.abort()
			pgno := uint32(0)
			allocs := testing.AllocsPerRun(2000, func() {
				pgno++
				data := text
				if pgno%2 == 0 {
					data = random
				}
				if err := e.encodePage(pgno, data); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per page", allocs)
			}
		})
	}
}

// snapEncBenchPages returns n random 4096-byte pages.
func snapEncBenchPages(b *testing.B, n int) []snapEncPage {
	pages := make([]snapEncPage, n)
	for i := range pages {
		pages[i] = snapEncPage{uint32(i + 1), snapEncRandomPage(b, 4096)}
	}
	return pages
}

func BenchmarkSnapshotEncoder(b *testing.B) {
	pages := snapEncBenchPages(b, 4096)
	chksum := snapEncPostApply(pages)
	for _, compress := range []bool{false, true} {
		b.Run(fmt.Sprintf("compress=%v", compress), func(b *testing.B) {
			b.SetBytes(int64(len(pages)) * 4096)
			for b.Loop() {
				e, err := newSnapshotEncoder(io.Discard, snapEncHeader(4096, uint32(len(pages))), compress)
				if err != nil {
					b.Fatal(err)
				}
				for _, p := range pages {
					if err := e.encodePage(p.pgno, p.data); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := e.close(chksum); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStockEncoder(b *testing.B) {
	pages := snapEncBenchPages(b, 4096)
	chksum := snapEncPostApply(pages)
	b.SetBytes(int64(len(pages)) * 4096)
	for b.Loop() {
		enc, err := ltx.NewEncoder(io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		if err := enc.EncodeHeader(snapEncHeader(4096, uint32(len(pages)))); err != nil {
			b.Fatal(err)
		}
		for _, p := range pages {
			if err := enc.EncodePage(ltx.PageHeader{Pgno: p.pgno}, p.data); err != nil {
				b.Fatal(err)
			}
		}
		enc.SetPostApplyChecksum(chksum)
		if err := enc.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
