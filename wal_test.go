package litefs

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"
)

// The formatTest helpers live in journal_test.go.

// walTestStep is one step of the WAL scenario; commits says whether it ends
// in exactly one committed transaction.
type walTestStep struct {
	name    string
	sql     []string
	commits bool
}

var walTestSteps = []walTestStep{
	{"create table", []string{"CREATE TABLE t(id INTEGER PRIMARY KEY, data BLOB)"}, true},
	{"single-row insert", []string{"INSERT INTO t(data) VALUES(randomblob(40))"}, true},
	{"single-row insert", []string{"INSERT INTO t(data) VALUES(randomblob(40))"}, true},
	{"single-row insert", []string{"INSERT INTO t(data) VALUES(randomblob(40))"}, true},
	{"multi-page transaction", []string{"BEGIN", formatTestInsert(300, 300), "COMMIT"}, true},
	{"rollback after cache spill", []string{"PRAGMA cache_size=2", "BEGIN", "UPDATE t SET data = randomblob(350)",
		formatTestInsert(600, 400), "ROLLBACK", "PRAGMA cache_size=-2000"}, false},
	{"single-row insert after rollback", []string{"INSERT INTO t(data) VALUES(randomblob(40))"}, true},
	{"commit after cache spill", []string{"PRAGMA cache_size=2", "BEGIN", "UPDATE t SET data = randomblob(250) WHERE id % 2 = 0",
		formatTestInsert(400, 300), "COMMIT", "PRAGMA cache_size=-2000"}, true},
	{"commit frame rewrites a page spilled earlier", []string{"PRAGMA cache_size=2", "BEGIN", formatTestInsert(300, 300),
		"UPDATE t SET data = data WHERE id % 25 = 0",
		"UPDATE t SET data = randomblob(300) WHERE id = (SELECT max(id) FROM t)", "COMMIT", "PRAGMA cache_size=-2000"}, true},
	{"delete rows", []string{"DELETE FROM t WHERE id > 20"}, true},
	{"vacuum shrinks the database", []string{"VACUUM"}, true},
}

// walTestExpect is what the live database looked like after one commit.
type walTestExpect struct {
	step      string
	pageCount uint32
	hash      string
}

// walTestRun is a WAL captured from a live connection: the WAL and database
// file bytes, and the state after every committed transaction in it.
type walTestRun struct {
	path     string // live database
	conn     *sql.Conn
	closeFn  func()
	pageSize int64
	wal      []byte // WAL ending in an uncommitted, spilled transaction
	base     []byte // database file (never checkpointed)
	expect   []walTestExpect
}

func walTestOpenWAL(t *testing.T, pageSize int) (string, *sql.Conn, func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db")
	conn, closeFn := formatTestOpen(t, path, fmt.Sprintf("PRAGMA page_size=%d", pageSize),
		"PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0")
	return path, conn, closeFn
}

func walTestSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	} else if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// walTestBuild runs walTestSteps in WAL mode and captures the WAL while the
// connection is open, in the middle of a final transaction that has spilled.
func walTestBuild(t *testing.T, pageSize int) *walTestRun {
	t.Helper()
	path, conn, closeFn := walTestOpenWAL(t, pageSize)
	run := &walTestRun{path: path, conn: conn, closeFn: closeFn, pageSize: int64(pageSize)}
	for _, s := range walTestSteps {
		before := walTestSize(t, path+"-wal")
		formatTestExec(t, conn, s.sql...)
		if !s.commits {
			if walTestSize(t, path+"-wal") <= before {
				t.Fatalf("step %q did not spill into the WAL", s.name)
			}
			continue
		}
		run.expect = append(run.expect, walTestExpect{s.name,
			uint32(formatTestInt(t, conn, "PRAGMA page_count")), formatTestContentHash(t, conn)})
	}
	if n := len(run.expect); run.expect[n-1].pageCount >= run.expect[n-2].pageCount {
		t.Fatalf("vacuum did not shrink the database: %+v", run.expect[n-2:])
	}
	committed := walTestSize(t, path+"-wal")
	formatTestExec(t, conn, "PRAGMA cache_size=2", "BEGIN", formatTestInsert(500, 500))
	run.wal = formatTestRead(t, path+"-wal")
	run.base = formatTestRead(t, path)
	formatTestExec(t, conn, "ROLLBACK", "PRAGMA cache_size=-2000")
	if int64(len(run.wal)) <= committed {
		t.Fatal("open transaction did not spill into the WAL")
	}
	return run
}

// walTestCommits returns every commit a new reader finds in wal.
func walTestCommits(t *testing.T, wal []byte, hdr WALHeader) []WALCommit {
	t.Helper()
	return walTestWalk(t, NewWALReader(bytes.NewReader(wal), hdr))
}

// walTestWalk returns every commit r finds, checking Offset after each.
func walTestWalk(t *testing.T, r *WALReader) []WALCommit {
	t.Helper()
	var commits []WALCommit
	for {
		c, ok, err := r.Next()
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if !ok {
			return commits
		}
		if r.Offset() != c.End {
			t.Fatalf("Offset() = %d after commit ending at %d", r.Offset(), c.End)
		}
		commits = append(commits, c)
	}
}

func walTestHeader(t *testing.T, wal []byte) WALHeader {
	t.Helper()
	hdr, err := ParseWALHeader(wal)
	if err != nil {
		t.Fatalf("ParseWALHeader: %v", err)
	}
	return hdr
}

// walTestCheckPages checks that c.Pages maps each page to the data of the
// last frame for it in [c.Offset, c.End), and that c is frame aligned. It
// reports whether some page has more than one frame in the transaction.
func walTestCheckPages(t *testing.T, wal []byte, pageSize int64, c WALCommit) (rewritten bool) {
	t.Helper()
	frameSize := WALFrameHeaderSize + pageSize
	if (c.Offset-WALHeaderSize)%frameSize != 0 || (c.End-c.Offset)%frameSize != 0 || c.End <= c.Offset {
		t.Fatalf("commit %d..%d is not frame aligned", c.Offset, c.End)
	}
	last := map[uint32]int64{}
	for off := c.Offset; off < c.End; off += frameSize {
		last[binary.BigEndian.Uint32(wal[off:])] = off + WALFrameHeaderSize
	}
	if len(last) != len(c.Pages) {
		t.Fatalf("commit at %d: %d pages, frames hold %d", c.Offset, len(c.Pages), len(last))
	}
	for pgno, off := range last {
		if c.Pages[pgno] != off {
			t.Fatalf("commit at %d: page %d at %d, want last frame's data at %d", c.Offset, pgno, c.Pages[pgno], off)
		}
	}
	return int64(len(last)) < (c.End-c.Offset)/frameSize
}

// walTestApply writes c's pages into the database image db and resizes it.
func walTestApply(db []byte, wal []byte, pageSize int64, c WALCommit) []byte {
	size := int64(c.Commit) * pageSize
	for pgno, off := range c.Pages {
		pos := int64(pgno-1) * pageSize
		if pos >= size {
			continue
		}
		if need := pos + pageSize; int64(len(db)) < need {
			db = append(db, make([]byte, need-int64(len(db)))...)
		}
		copy(db[pos:pos+pageSize], wal[off:off+pageSize])
	}
	if int64(len(db)) < size {
		return append(db, make([]byte, size-int64(len(db)))...)
	}
	return db[:size]
}

func TestWALReader_ReturnsExactlyTheCommittedTransactions(t *testing.T) {
	for _, pageSize := range []int{512, 4096, 65536} {
		t.Run(fmt.Sprintf("page size %d", pageSize), func(t *testing.T) {
			run := walTestBuild(t, pageSize)
			hdr := walTestHeader(t, run.wal)
			if int64(hdr.PageSize) != run.pageSize {
				t.Fatalf("header page size %d, want %d", hdr.PageSize, pageSize)
			}
			commits := walTestCommits(t, run.wal, hdr)
			if len(commits) != len(run.expect) {
				t.Fatalf("got %d commits, want %d", len(commits), len(run.expect))
			}
			db := bytes.Clone(run.base)
			prevEnd, rewritten := int64(WALHeaderSize), false
			for i, c := range commits {
				want := run.expect[i]
				if c.Offset != prevEnd {
					t.Fatalf("commit %d (%s) starts at %d, previous ended at %d", i, want.step, c.Offset, prevEnd)
				}
				prevEnd = c.End
				if c.Commit != want.pageCount {
					t.Fatalf("commit %d (%s): Commit = %d, want page_count %d", i, want.step, c.Commit, want.pageCount)
				}
				rewritten = walTestCheckPages(t, run.wal, run.pageSize, c) || rewritten
				db = walTestApply(db, run.wal, run.pageSize, c)
				if got := formatTestCheckCopy(t, db); got != want.hash {
					t.Fatalf("commit %d (%s): applied content differs from the live database", i, want.step)
				}
			}
			if !rewritten {
				t.Fatal("no transaction wrote a page twice; the last-frame rule went untested")
			}
			// Closing the last connection checkpoints the WAL into the database
			// file: it must then equal the base file with every commit applied.
			run.closeFn()
			if got := formatTestSHA(formatTestRead(t, run.path)); got != formatTestSHA(db) {
				t.Fatal("checkpointed database differs from the base file with all commits applied")
			}
		})
	}
}

func TestWALReader_EndsWalkWithoutErrorOnInvalidFrames(t *testing.T) {
	run := walTestBuild(t, 4096)
	hdr := walTestHeader(t, run.wal)
	ref := walTestCommits(t, run.wal, hdr)
	n, fs := len(ref), WALFrameHeaderSize+run.pageSize
	const multi = 4 // index of the multi-page transaction in walTestSteps
	if ref[multi].End-ref[multi].Offset < 3*fs {
		t.Fatalf("transaction %d has too few frames", multi)
	}
	flip := func(off int64) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x01; return b }
	}
	cut := func(size int64) func([]byte) []byte {
		return func(b []byte) []byte { return b[:size] }
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   int // commits still returned: ref[:want]
	}{
		{"uncommitted tail is not returned", func(b []byte) []byte { return b }, n},
		{"file ends after the header", cut(WALHeaderSize), 0},
		{"file ends at a commit boundary", cut(ref[3].End), 4},
		{"file ends one byte before the last commit frame ends", cut(ref[n-1].End - 1), n - 1},
		{"file ends inside the last frame header", cut(ref[n-1].End - fs + 10), n - 1},
		{"file ends after the first frame of a multi-frame transaction", cut(ref[multi].Offset + fs), multi},
		{"flipped byte in page data", flip(ref[multi].Offset + fs + WALFrameHeaderSize + 100), multi},
		{"flipped byte in a commit frame's checksum", flip(ref[2].End - fs + 16), 2},
		{"flipped commit field", flip(ref[2].End - fs + 7), 2},
		{"frame salt differs from the header", flip(ref[2].Offset + 8), 2},
		{"frame salt-2 differs from the header", flip(ref[multi].Offset + fs + 12), multi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wal := tc.mutate(bytes.Clone(run.wal))
			got := walTestCommits(t, wal, hdr)
			if len(got) != tc.want {
				t.Fatalf("got %d commits, want %d", len(got), tc.want)
			}
			for i := range got {
				walTestSameCommit(t, fmt.Sprintf("commit %d", i), got[i], ref[i])
			}
		})
	}
}

// walTestFailingReader fails every read at or past failAt.
type walTestFailingReader struct {
	r      io.ReaderAt
	failAt int64
}

var errWALTestRead = errors.New("injected read failure")

func (r walTestFailingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.failAt {
		return 0, errWALTestRead
	}
	return r.r.ReadAt(p, off)
}

func TestWALReader_ReportsReadErrors(t *testing.T) {
	run := walTestBuild(t, 1024)
	hdr := walTestHeader(t, run.wal)
	ref := walTestCommits(t, run.wal, hdr)
	r := NewWALReader(walTestFailingReader{bytes.NewReader(run.wal), ref[1].End}, hdr)
	if _, ok, err := r.Next(); !ok || err != nil {
		t.Fatalf("first Next: ok=%v err=%v", ok, err)
	}
	if _, ok, err := r.Next(); !ok || err != nil {
		t.Fatalf("second Next: ok=%v err=%v", ok, err)
	}
	if _, ok, err := r.Next(); ok || !errors.Is(err, errWALTestRead) {
		t.Fatalf("third Next: ok=%v err=%v, want the read error", ok, err)
	}
	if r.Offset() != ref[1].End {
		t.Fatalf("Offset() = %d after failed read, want %d", r.Offset(), ref[1].End)
	}
}

func TestWALReader_RestartedWALWithNewSalts(t *testing.T) {
	path, conn, _ := walTestOpenWAL(t, 4096)
	insert := "INSERT INTO t(data) VALUES(randomblob(40))"
	formatTestExec(t, conn, walTestSteps[0].sql[0], "BEGIN", formatTestInsert(300, 300), "COMMIT", insert, insert)
	old := formatTestRead(t, path+"-wal")
	oldHdr := walTestHeader(t, old)
	oldReader := NewWALReader(bytes.NewReader(old), oldHdr)
	walTestWalk(t, oldReader)

	// After a RESTART checkpoint the next writer rewrites the WAL header with
	// new salts and writes its frames from offset 32 over the old ones.
	formatTestExec(t, conn, "PRAGMA wal_checkpoint(RESTART)")
	base := formatTestRead(t, path)
	formatTestExec(t, conn, insert, insert)
	want := formatTestContentHash(t, conn)
	wal := formatTestRead(t, path+"-wal")
	hdr := walTestHeader(t, wal)
	if hdr.Salt1 == oldHdr.Salt1 || hdr.Seq != oldHdr.Seq+1 {
		t.Fatalf("WAL was not restarted: old %+v, new %+v", oldHdr, hdr)
	}
	commits := walTestCommits(t, wal, hdr)
	if len(commits) != 2 {
		t.Fatalf("got %d commits in the restarted WAL, want 2", len(commits))
	}
	if int64(len(wal)) <= commits[1].End {
		t.Fatal("no frames of the previous generation are left after the new ones")
	}
	if got := walTestCommits(t, wal, oldHdr); len(got) != 0 {
		t.Fatalf("reader with the old header found %d commits, want 0", len(got))
	}
	s1, s2 := oldReader.Checksums()
	r := ResumeWALReader(bytes.NewReader(wal), oldHdr, oldReader.Offset(), s1, s2)
	if _, ok, err := r.Next(); ok || err != nil {
		t.Fatalf("resumed old-generation reader: ok=%v err=%v, want no commit and no error", ok, err)
	}
	db := base
	for _, c := range commits {
		db = walTestApply(db, wal, 4096, c)
	}
	if got := formatTestCheckCopy(t, db); got != want {
		t.Fatal("checkpointed database plus restarted WAL differs from the live database")
	}
}

func TestWALReader_FollowsLiveWALAndResumes(t *testing.T) {
	path, conn, _ := walTestOpenWAL(t, 4096)
	formatTestExec(t, conn, walTestSteps[0].sql...)
	f, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hb [WALHeaderSize]byte
	if _, err := f.ReadAt(hb[:], 0); err != nil {
		t.Fatal(err)
	}
	hdr := walTestHeader(t, hb[:])
	r := NewWALReader(f, hdr)
	nextOne := func(name string) WALCommit {
		t.Helper()
		c, ok, err := r.Next()
		if !ok || err != nil {
			t.Fatalf("%s: Next: ok=%v err=%v, want a commit", name, ok, err)
		}
		if want := uint32(formatTestInt(t, conn, "PRAGMA page_count")); c.Commit != want {
			t.Fatalf("%s: Commit = %d, want %d", name, c.Commit, want)
		}
		if _, ok, err := r.Next(); ok || err != nil {
			t.Fatalf("%s: second Next: ok=%v err=%v, want nothing more", name, ok, err)
		}
		return c
	}
	nextOne("create table")

	insert := []string{"INSERT INTO t(data) VALUES(randomblob(40))"}
	steps := []struct {
		name          string
		open, finish  []string // finish != nil: Next must find nothing between open and finish
		saveAfterStep bool
	}{
		{"single-row insert", insert, nil, false},
		{"multi-page transaction", []string{"BEGIN", formatTestInsert(200, 300), "COMMIT"}, nil, true},
		{"spilled transaction before and after its commit",
			[]string{"PRAGMA cache_size=2", "BEGIN", formatTestInsert(500, 400)}, []string{"COMMIT", "PRAGMA cache_size=-2000"}, false},
		{"single-row insert", insert, nil, false},
		{"single-row insert", insert, nil, false},
	}
	var savedOff int64
	var savedS1, savedS2 uint32
	var later []WALCommit
	for i, s := range steps {
		formatTestExec(t, conn, s.open...)
		if s.finish != nil {
			before := r.Offset()
			if _, ok, err := r.Next(); ok || err != nil || r.Offset() != before {
				t.Fatalf("%s: Next inside the open transaction: ok=%v err=%v", s.name, ok, err)
			}
			formatTestExec(t, conn, s.finish...)
		}
		c := nextOne(s.name)
		if savedOff != 0 {
			later = append(later, c)
		}
		if s.saveAfterStep {
			savedOff = r.Offset()
			savedS1, savedS2 = r.Checksums()
			if savedOff != c.End {
				t.Fatalf("step %d: Offset() = %d, want %d", i, savedOff, c.End)
			}
		}
	}

	resumed := walTestWalk(t, ResumeWALReader(f, hdr, savedOff, savedS1, savedS2))
	if len(resumed) != len(later) {
		t.Fatalf("resumed reader found %d commits, want %d", len(resumed), len(later))
	}
	for i := range later {
		walTestSameCommit(t, fmt.Sprintf("resumed commit %d", i), resumed[i], later[i])
	}
}

// walTestSameCommit fails unless got and want describe the same transaction.
func walTestSameCommit(t *testing.T, what string, got, want WALCommit) {
	t.Helper()
	if got.Offset != want.Offset || got.End != want.End || got.Commit != want.Commit || len(got.Pages) != len(want.Pages) {
		t.Fatalf("%s = %d..%d commit %d with %d pages, want %d..%d commit %d with %d pages", what,
			got.Offset, got.End, got.Commit, len(got.Pages), want.Offset, want.End, want.Commit, len(want.Pages))
	}
	for pgno, off := range want.Pages {
		if got.Pages[pgno] != off {
			t.Fatalf("%s: page %d at %d, want %d", what, pgno, got.Pages[pgno], off)
		}
	}
}

// walTestRechecksum rewrites the WAL with the given magic number, recomputing
// the header checksum and the checksum of every frame that is valid in the
// original (uncommitted tail included).
func walTestRechecksum(t *testing.T, wal []byte, magic uint32) []byte {
	t.Helper()
	hdr := walTestHeader(t, wal)
	out := bytes.Clone(wal)
	binary.BigEndian.PutUint32(out[0:], magic)
	be := magic == walMagicBE
	s1, s2 := walChecksum(be, out[:24], 0, 0)
	binary.BigEndian.PutUint32(out[24:], s1)
	binary.BigEndian.PutUint32(out[28:], s2)
	fs := WALFrameHeaderSize + int(hdr.PageSize)
	o1, o2 := hdr.Checksum1, hdr.Checksum2
	for off := WALHeaderSize; off+fs <= len(wal); off += fs {
		fr := wal[off : off+fs]
		o1, o2 = walChecksum(hdr.BigEndianChecksum, fr[:8], o1, o2)
		o1, o2 = walChecksum(hdr.BigEndianChecksum, fr[WALFrameHeaderSize:], o1, o2)
		if binary.BigEndian.Uint32(fr[8:]) != hdr.Salt1 || binary.BigEndian.Uint32(fr[12:]) != hdr.Salt2 ||
			binary.BigEndian.Uint32(fr[16:]) != o1 || binary.BigEndian.Uint32(fr[20:]) != o2 {
			break
		}
		s1, s2 = walChecksum(be, fr[:8], s1, s2)
		s1, s2 = walChecksum(be, fr[WALFrameHeaderSize:], s1, s2)
		binary.BigEndian.PutUint32(out[off+16:], s1)
		binary.BigEndian.PutUint32(out[off+20:], s2)
	}
	return out
}

func TestWALReader_ChecksumByteOrderFollowsMagic(t *testing.T) {
	run := walTestBuild(t, 4096)
	ref := walTestCommits(t, run.wal, walTestHeader(t, run.wal))
	final := run.expect[len(run.expect)-1].hash
	baseHash := formatTestCheckCopy(t, run.base)
	beMagicOnly := bytes.Clone(run.wal)
	binary.BigEndian.PutUint32(beMagicOnly[0:], walMagicBE)
	s1, s2 := walChecksum(true, beMagicOnly[:24], 0, 0)
	binary.BigEndian.PutUint32(beMagicOnly[24:], s1)
	binary.BigEndian.PutUint32(beMagicOnly[28:], s2)
	for _, tc := range []struct {
		name      string
		wal       []byte
		bigEndian bool
		commits   int
		hash      string // what SQLite itself recovers from base + wal
	}{
		{"little-endian as SQLite wrote it", run.wal, false, len(ref), final},
		{"rewritten with big-endian checksums", walTestRechecksum(t, run.wal, walMagicBE), true, len(ref), final},
		{"big-endian magic over little-endian frame checksums", beMagicOnly, true, 0, baseHash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := walTestHeader(t, tc.wal)
			if hdr.BigEndianChecksum != tc.bigEndian {
				t.Fatalf("BigEndianChecksum = %v, want %v", hdr.BigEndianChecksum, tc.bigEndian)
			}
			got := walTestCommits(t, tc.wal, hdr)
			if len(got) != tc.commits {
				t.Fatalf("got %d commits, want %d", len(got), tc.commits)
			}
			for i := range got {
				walTestSameCommit(t, fmt.Sprintf("commit %d", i), got[i], ref[i])
			}
			if h := formatTestCheckFiles(t, run.base, tc.wal); h != tc.hash {
				t.Fatal("SQLite recovered different content from this WAL than expected")
			}
		})
	}
}

func TestParseWALHeader(t *testing.T) {
	headers := map[int][]byte{}
	for _, ps := range []int{4096, 65536} {
		path, conn, _ := walTestOpenWAL(t, ps)
		formatTestExec(t, conn, walTestSteps[0].sql...)
		headers[ps] = formatTestRead(t, path+"-wal")[:WALHeaderSize]
	}
	put := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.BigEndian.PutUint32(b[off:], v); return b }
	}
	flip := func(off int) func([]byte) []byte {
		return func(b []byte) []byte { b[off] ^= 0x01; return b }
	}
	for _, tc := range []struct {
		name     string
		pageSize int // header to start from
		mutate   func([]byte) []byte
		wantErr  string // "" means valid
	}{
		{"real header with 4096-byte pages", 4096, nil, ""},
		{"real header stores 65536 as 65536", 65536, nil, ""},
		{"shorter than 32 bytes", 4096, func(b []byte) []byte { return b[:31] }, "need 32"},
		{"bad magic", 4096, flip(0), "bad magic"},
		{"unsupported version", 4096, put(4, walVersion+1), "version"},
		{"page size 1, the database header's encoding of 65536", 4096, put(8, 1), "page size"},
		{"page size not a power of two", 4096, put(8, 1000), "page size"},
		{"page size below 512", 4096, put(8, 256), "page size"},
		{"page size above 65536", 4096, put(8, 131072), "page size"},
		{"page size changed without the checksum", 4096, put(8, 8192), "checksum"},
		{"salt changed without the checksum", 4096, flip(17), "checksum"},
		{"checksum flipped", 4096, flip(31), "checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(headers[tc.pageSize])
			if tc.mutate != nil {
				b = tc.mutate(b)
			}
			h, err := ParseWALHeader(b)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Version != walVersion || int(h.PageSize) != tc.pageSize || h.BigEndianChecksum {
				t.Fatalf("header = %+v", h)
			}
		})
	}
}

// BenchmarkWALReader_Next measures the production pattern: one single-frame
// transaction read per Next from a resumed reader.
func BenchmarkWALReader_Next(b *testing.B) {
	const pageSize, frames = 4096, 256
	wal := make([]byte, WALHeaderSize, WALHeaderSize+frames*(WALFrameHeaderSize+pageSize))
	binary.BigEndian.PutUint32(wal[0:], walMagicLE)
	binary.BigEndian.PutUint32(wal[4:], walVersion)
	binary.BigEndian.PutUint32(wal[8:], pageSize)
	binary.BigEndian.PutUint32(wal[16:], 0x1234)
	s1, s2 := walChecksum(false, wal[:24], 0, 0)
	binary.BigEndian.PutUint32(wal[24:], s1)
	binary.BigEndian.PutUint32(wal[28:], s2)
	for i := range frames { // every frame commits one of 16 pages
		fr := make([]byte, WALFrameHeaderSize+pageSize)
		binary.BigEndian.PutUint32(fr[0:], uint32(i%16+1))
		binary.BigEndian.PutUint32(fr[4:], 16)
		binary.BigEndian.PutUint32(fr[8:], 0x1234)
		s1, s2 = walChecksum(false, fr[:8], s1, s2)
		s1, s2 = walChecksum(false, fr[WALFrameHeaderSize:], s1, s2)
		binary.BigEndian.PutUint32(fr[16:], s1)
		binary.BigEndian.PutUint32(fr[20:], s2)
		wal = append(wal, fr...)
	}
	hdr, err := ParseWALHeader(wal)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(pageSize)
	b.ReportAllocs()
	r := NewWALReader(bytes.NewReader(wal), hdr)
	for i := 0; b.Loop(); i++ {
		if i%frames == 0 {
			r = NewWALReader(bytes.NewReader(wal), hdr)
		}
		if _, ok, err := r.Next(); !ok || err != nil {
			b.Fatalf("Next: ok=%v err=%v", ok, err)
		}
	}
}
