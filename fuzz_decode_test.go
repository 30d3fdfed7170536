package litefs

import (
	"bytes"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/litefs/litefs/internal/fuzzseed"
	"github.com/superfly/ltx"
)

// Fuzz targets for the decoders of the root package that read what came from
// the network or the disk: snapshot LTX files, WALs and rollback journals.
// FuzzApplyLTX (fuzz_apply_test.go) drives a whole received file through a
// real database. See docs/ARCHITECTURE.md, "Fuzzing".

// FuzzDecodeSnapshotLTX feeds decodeSnapshotLTX arbitrary bytes. It must not
// panic or hang, must report every page in order, and whatever it accepts
// the ltx module's own decoder must accept too, with the same pages.
func FuzzDecodeSnapshotLTX(f *testing.F) {
	for _, tt := range []struct {
		name     string
		pageSize uint32
		commit   uint32
		kind     string
		compress bool
	}{
		{"small-text", 512, 3, "text", true},
		{"small-random-literal", 512, 2, "random", false},
		{"mixed-1024", 1024, 4, "mixed", true},
	} {
		hdr := snapEncHeader(tt.pageSize, tt.commit)
		b := snapDecWriteOwn(f, hdr, snapDecPages(hdr, tt.kind, 1), tt.compress)
		fuzzseed.Add(f, tt.name, b)
		fuzzseed.Add(f, tt.name+"-truncated", fuzzseed.Truncated(b))
		fuzzseed.Add(f, tt.name+"-flipped-header", fuzzseed.Flipped(b, 30))
		fuzzseed.Add(f, tt.name+"-flipped-index", fuzzseed.Flipped(b, len(b)-ltx.TrailerSize-10))
	}
	hdr := snapEncHeader(512, 2)
	fuzzseed.Add(f, "stock-lz4-frames", snapDecWriteStock(f, hdr, snapDecPages(hdr, "text", 2)))
	f.Fuzz(func(t *testing.T, b []byte) {
		var pages []snapEncPage
		got, trailer, err := decodeSnapshotLTX(bytes.NewReader(b), func(h ltx.Header, pgno uint32, data []byte) error {
			if len(data) != int(h.PageSize) {
				t.Fatalf("page %d is %d bytes, page size %d", pgno, len(data), h.PageSize)
			}
			if n := len(pages); n > 0 && pages[n-1].pgno >= pgno {
				t.Fatalf("page %d reported after page %d", pgno, pages[n-1].pgno)
			}
			pages = append(pages, snapEncPage{pgno, bytes.Clone(data)})
			return nil
		})
		if err != nil {
			return
		}
		if stock, err := snapDecDecodeStock(b); err != nil {
			t.Fatalf("decodeSnapshotLTX accepted a file the ltx decoder refuses: %v", err)
		} else if stock != trailer {
			t.Fatalf("trailer %+v, the ltx decoder read %+v", trailer, stock)
		}
		var want []snapEncPage
		if _, _, err := decodeLTX(bytes.NewReader(b), func(_ ltx.Header, pgno uint32, data []byte) error {
			want = append(want, snapEncPage{pgno, bytes.Clone(data)})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if diff := snapDecEqualPages(pages, want); diff != "" {
			t.Fatalf("header %+v: %s", got, diff)
		}
	})
}

// FuzzWALReader feeds ParseWALHeader and a WALReader an arbitrary WAL file.
// Every commit returned must lie inside the file, follow the previous one,
// be a whole number of frames and point its pages inside itself; the walk
// must end within one step per frame; and a reader resumed at Offset and
// Checksums must find what the first one finds next.
func FuzzWALReader(f *testing.F) {
	for _, ps := range []int{512, 1024} {
		wal := fuzzWALFile(f, ps)
		name := fmt.Sprintf("sqlite-%d", ps)
		fuzzseed.Add(f, name, wal)
		fuzzseed.Add(f, name+"-truncated", fuzzseed.Truncated(wal))
		fuzzseed.Add(f, name+"-flipped-frame", fuzzseed.Flipped(wal, WALHeaderSize+WALFrameHeaderSize+ps+7))
		fuzzseed.Add(f, name+"-flipped-header", fuzzseed.Flipped(wal, 9))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, err := ParseWALHeader(b)
		if err != nil {
			return
		}
		frame := int64(WALFrameHeaderSize) + int64(hdr.PageSize)
		r := NewWALReader(bytes.NewReader(b), hdr)
		for steps := int64(0); ; steps++ {
			if steps > int64(len(b))/frame {
				t.Fatalf("%d commits from a %d-byte WAL of %d-byte frames", steps, len(b), frame)
			}
			off := r.Offset()
			s1, s2 := r.Checksums()
			c, ok, err := r.Next()
			if err != nil {
				t.Fatalf("error from an in-memory WAL: %v", err)
			}
			again, againOK, _ := ResumeWALReader(bytes.NewReader(b), hdr, off, s1, s2).Next()
			if againOK != ok || again.End != c.End || len(again.Pages) != len(c.Pages) {
				t.Fatalf("resumed reader found %v %+v, the first one %v %+v", againOK, again, ok, c)
			}
			if !ok {
				return
			}
			fuzzCheckWALCommit(t, c, off, frame, int64(len(b)))
		}
	})
}

// fuzzCheckWALCommit checks that commit c, found at off, is well formed.
func fuzzCheckWALCommit(t *testing.T, c WALCommit, off, frame, size int64) {
	t.Helper()
	if c.Offset != off || c.End <= c.Offset || c.End > size || (c.End-c.Offset)%frame != 0 || c.Commit == 0 {
		t.Fatalf("commit %+v found at %d: not whole frames inside the %d-byte file", c, off, size)
	}
	for pgno, at := range c.Pages {
		if pgno == 0 || at < c.Offset+WALFrameHeaderSize || at+frame-WALFrameHeaderSize > c.End ||
			(at-WALHeaderSize-WALFrameHeaderSize)%frame != 0 {
			t.Fatalf("page %d of commit %+v at offset %d", pgno, c, at)
		}
	}
}

// fuzzWALFile returns a small real WAL: a table and a few transactions with
// the given page size, captured while the connection is still open.
func fuzzWALFile(tb testing.TB, pageSize int) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "db")
	return fuzzSQLite(tb, path, path+"-wal", fmt.Sprintf("PRAGMA page_size=%d", pageSize),
		"PRAGMA journal_mode=WAL", "PRAGMA wal_autocheckpoint=0",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, data BLOB)",
		"INSERT INTO t(data) VALUES(randomblob(100))",
		"BEGIN", formatTestInsert(6, 300), "COMMIT",
		"UPDATE t SET data = randomblob(50) WHERE id = 2")
}

// fuzzSQLite runs stmts on one connection to the database at path and
// returns the file at capture while the connection is still open.
func fuzzSQLite(tb testing.TB, path, capture string, stmts ...string) []byte {
	tb.Helper()
	sdb, err := sql.Open("sqlite3", "file:"+path)
	if err != nil {
		tb.Fatal(err)
	}
	defer sdb.Close()
	sdb.SetMaxOpenConns(1)
	for _, q := range stmts {
		if _, err := sdb.Exec(q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	b, err := os.ReadFile(capture)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzRollbackJournal plays an arbitrary journal back into a copy of a small
// real database. It must not panic or hang; it must write no more records
// than the journal holds, never grow the database past the journal's
// initial size, and leave the database untouched when it reports no
// rollback.
func FuzzRollbackJournal(f *testing.F) {
	dbFile, hot := fuzzHotJournal(f, "OFF")
	_, synced := fuzzHotJournal(f, "FULL")
	for name, j := range map[string][]byte{"sync-off": hot, "sync-full": synced} {
		fuzzseed.Add(f, name, j)
		fuzzseed.Add(f, name+"-truncated", fuzzseed.Truncated(j))
		fuzzseed.Add(f, name+"-flipped-record", fuzzseed.Flipped(j, 512+4+100))
		fuzzseed.Add(f, name+"-flipped-header", fuzzseed.Flipped(j, 13))
	}
	f.Fuzz(func(t *testing.T, j []byte) {
		path := filepath.Join(t.TempDir(), "db")
		if err := os.WriteFile(path, dbFile, 0o644); err != nil {
			t.Fatal(err)
		}
		db, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		pages, rolledBack, err := RollbackJournal(bytes.NewReader(j), int64(len(j)), db, func(string) bool { return true })
		if err != nil {
			return // only a database resize the file system refuses (a huge initial size)
		}
		fi, serr := db.Stat()
		if serr != nil {
			t.Fatal(serr)
		}
		if pages < 0 || pages > len(j)/(512+8) {
			t.Fatalf("%d records written back from a %d-byte journal", pages, len(j))
		}
		if !rolledBack {
			if after, err := os.ReadFile(path); err != nil || pages != 0 || !bytes.Equal(after, dbFile) {
				t.Fatalf("no rollback reported, yet %d records were written or the database changed (%v)", pages, err)
			}
			return
		}
		if ps := fuzzJournalPageSize(j, dbFile); fi.Size() > int64(binary.BigEndian.Uint32(j[16:]))*ps {
			t.Fatalf("database is %d bytes, past the journal's initial size", fi.Size())
		}
	})
}

// fuzzJournalPageSize is the page size playback uses for journal j.
func fuzzJournalPageSize(j, db []byte) int64 {
	if ps := binary.BigEndian.Uint32(j[24:]); ps != 0 {
		return int64(ps)
	}
	return int64(binary.BigEndian.Uint16(db[16:]))
}

// fuzzHotJournal returns a small real database file (512-byte pages) and the
// hot journal of a transaction on it, captured while it was open.
func fuzzHotJournal(tb testing.TB, synchronous string) (db, journal []byte) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "db")
	db = fuzzSQLite(tb, path, path, "PRAGMA page_size=512", "PRAGMA journal_mode=DELETE",
		"CREATE TABLE t(id INTEGER PRIMARY KEY, data BLOB)", "BEGIN", formatTestInsert(6, 300), "COMMIT")
	journal = fuzzSQLite(tb, path, path+"-journal", "PRAGMA synchronous="+synchronous, "PRAGMA cache_size=2",
		"BEGIN", "UPDATE t SET data = randomblob(200)", formatTestInsert(4, 300))
	return db, journal
}
