package litefs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/superfly/ltx"
)

// shipAll applies every LTX file of src after dst's position to dst.
func shipAll(t *testing.T, src, dst *DB) {
	t.Helper()
	for txid := dst.Pos().TXID + 1; txid <= src.Pos().TXID; txid++ {
		f, err := src.OpenLTX(txid)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dst.ApplyLTX(context.Background(), f); err != nil {
			f.Close()
			t.Fatalf("apply txid %s: %v", txid, err)
		}
		f.Close()
	}
}

func TestApplyLTX_ReplicaConvergesToPrimary(t *testing.T) {
	primary := openTestStore(t, t.TempDir())
	replica := openTestStore(t, t.TempDir())
	pdb, _ := primary.CreateDB("a.db")
	rdb, _ := replica.CreateDB("a.db")
	for _, rows := range []int{10, 50, 20, 35} {
		writeTx(t, pdb, makeSQLiteFile(t, rows))
		shipAll(t, pdb, rdb)
		if got, want := rdb.Pos(), pdb.Pos(); got != want {
			t.Fatalf("replica at %v, primary at %v", got, want)
		}
	}
	a, _ := os.ReadFile(pdb.path(FileDatabase))
	b, _ := os.ReadFile(rdb.path(FileDatabase))
	if !bytes.Equal(a, b) {
		t.Fatal("replica database file differs from the primary's")
	}
}

func TestApplyLTX_RefusesFileThatDoesNotContinueHistory(t *testing.T) {
	primary := openTestStore(t, t.TempDir())
	replica := openTestStore(t, t.TempDir())
	pdb, _ := primary.CreateDB("a.db")
	rdb, _ := replica.CreateDB("a.db")
	writeTx(t, pdb, makeSQLiteFile(t, 10))
	writeTx(t, pdb, makeSQLiteFile(t, 20))
	f, err := pdb.OpenLTX(2) // the replica is at 0: TXID 2 does not follow
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := rdb.ApplyLTX(context.Background(), f); !errors.Is(err, ErrPosMismatch) {
		t.Fatalf("apply error %v, want ErrPosMismatch", err)
	}
	if rdb.Pos().TXID != 0 {
		t.Fatal("a refused file moved the position")
	}
}

func TestApplyLTX_RefusesDamagedFile(t *testing.T) {
	primary := openTestStore(t, t.TempDir())
	replica := openTestStore(t, t.TempDir())
	pdb, _ := primary.CreateDB("a.db")
	rdb, _ := replica.CreateDB("a.db")
	writeTx(t, pdb, makeSQLiteFile(t, 10))
	f, _ := pdb.OpenLTX(1)
	b, _ := readAllClose(f)
	for _, bad := range [][]byte{b[:len(b)/2], append(append([]byte{}, b[:200]...), append([]byte{b[200] ^ 1}, b[201:]...)...), []byte("not an ltx file")} {
		if _, err := rdb.ApplyLTX(context.Background(), bytes.NewReader(bad)); err == nil {
			t.Fatal("a damaged file was applied")
		}
	}
	if rdb.Pos().TXID != 0 {
		t.Fatal("a refused file moved the position")
	}
	if fi, _ := os.Stat(rdb.path(FileDatabase)); fi.Size() != 0 {
		t.Fatal("a refused file changed the database")
	}
}

func TestWriteSnapshot_ReplacesDivergedReplica(t *testing.T) {
	primary := openTestStore(t, t.TempDir())
	replica := openTestStore(t, t.TempDir())
	pdb, _ := primary.CreateDB("a.db")
	rdb, _ := replica.CreateDB("a.db")
	writeTx(t, pdb, makeSQLiteFile(t, 30))
	writeTx(t, pdb, makeSQLiteFile(t, 40))
	writeTx(t, rdb, makeSQLiteFile(t, 5)) // its own, diverged history

	var buf bytes.Buffer
	pos, err := pdb.WriteSnapshot(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if pos != pdb.Pos() {
		t.Fatalf("snapshot at %v, primary at %v", pos, pdb.Pos())
	}
	got, err := rdb.ApplyLTX(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if got != pos {
		t.Fatalf("replica at %v after snapshot, want %v", got, pos)
	}
	writeTx(t, pdb, makeSQLiteFile(t, 45))
	shipAll(t, pdb, rdb) // history continues after the snapshot
	if rdb.Pos() != pdb.Pos() {
		t.Fatalf("replica at %v, primary at %v", rdb.Pos(), pdb.Pos())
	}
}

func TestWriteSnapshot_EmptyDatabaseHasNone(t *testing.T) {
	s := openTestStore(t, t.TempDir())
	db, _ := s.CreateDB("a.db")
	if _, err := db.WriteSnapshot(context.Background(), &bytes.Buffer{}); !errors.Is(err, ErrEmptyDatabase) {
		t.Fatalf("error %v, want ErrEmptyDatabase", err)
	}
}

func readAllClose(f io.ReadCloser) ([]byte, error) {
	defer f.Close()
	var buf bytes.Buffer
	_, err := buf.ReadFrom(f)
	return buf.Bytes(), err
}

func TestApplyLTX_RefusesDamagedSnapshotAndKeepsTheOldCopy(t *testing.T) {
	primary := openTestStore(t, t.TempDir())
	pdb, _ := primary.CreateDB("a.db")
	writeTx(t, pdb, makeSQLiteFile(t, 400)) // several staging batches
	var buf bytes.Buffer
	if _, err := pdb.WriteSnapshot(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flip := func(off int) []byte {
		b := append([]byte(nil), good...)
		b[off] ^= 1
		return b
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"cut in the middle", good[:len(good)/2]},
		{"cut before the trailer", good[:len(good)-8]},
		{"page byte flipped early", flip(200)},
		{"page byte flipped late", flip(len(good) - 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			replica := openTestStore(t, t.TempDir())
			rdb, _ := replica.CreateDB("a.db")
			old := makeSQLiteFile(t, 5)
			writeTx(t, rdb, old)
			before := rdb.Pos()
			if _, err := rdb.ApplyLTX(context.Background(), bytes.NewReader(tt.data)); err == nil {
				t.Fatal("a damaged snapshot was applied")
			}
			if rdb.Pos() != before {
				t.Fatalf("position %v, want %v unchanged", rdb.Pos(), before)
			}
			if b, _ := os.ReadFile(rdb.path(FileDatabase)); !bytes.Equal(b, old) {
				t.Fatal("a refused snapshot changed the database file")
			}
			for _, dir := range []string{rdb.dir, rdb.LTXDir()} {
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if bytes.HasSuffix([]byte(e.Name()), []byte(".tmp")) {
						t.Fatalf("temporary file %s left in %s", e.Name(), dir)
					}
				}
			}
		})
	}
}

func TestApplyLTX_RefusesASnapshotClaimingAHugeDatabaseWithoutAllocatingForIt(t *testing.T) {
	hdr := snapEncHeader(4096, 1<<31) // 8 TiB claimed; the stream ends after page 1
	file, err := hdr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	page := makeSQLiteFile(t, 1)[:4096]
	block := append(appendLiteralPrefix(nil, len(page)), page...)
	file = binary.BigEndian.AppendUint32(file, 1)                      // pgno
	file = binary.BigEndian.AppendUint16(file, ltx.PageHeaderFlagSize) // flags
	file = append(binary.BigEndian.AppendUint32(file, uint32(len(block))), block...)
	buf := bytes.NewBuffer(file)
	replica := openTestStore(t, t.TempDir())
	rdb, _ := replica.CreateDB("a.db")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := rdb.ApplyLTX(context.Background(), bytes.NewReader(buf.Bytes())); err == nil {
		t.Fatal("a cut snapshot was applied")
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
		t.Fatalf("refusing it allocated %d MiB: the claimed size was trusted", grew>>20)
	}
}

func TestApplyLTX_AppliesFilesReceivedInMemoryOrSpooledToDisk(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rows  int
		blob  string
		check func(t *testing.T, ltxSize, pageBytes int)
	}{
		{"a small file is kept in memory with its pages", 60, "randomblob(200)", func(t *testing.T, ltxSize, pageBytes int) {
			if ltxSize > memSpoolMax || pageBytes > memPagesMax {
				t.Fatalf("file of %d bytes with %d bytes of pages is not a small one", ltxSize, pageBytes)
			}
		}},
		{"a small file whose pages take much memory is decoded again to apply", 30000, "zeroblob(200)", func(t *testing.T, ltxSize, pageBytes int) {
			if ltxSize > memSpoolMax || pageBytes <= memPagesMax {
				t.Fatalf("file of %d bytes with %d bytes of pages does not take this path", ltxSize, pageBytes)
			}
		}},
		{"a large file is spooled to disk", 6000, "randomblob(200)", func(t *testing.T, ltxSize, pageBytes int) {
			if ltxSize <= memSpoolMax {
				t.Fatalf("file of %d bytes fits in memory", ltxSize)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			primary := openTestStore(t, t.TempDir())
			replica := openTestStore(t, t.TempDir())
			pdb, _ := primary.CreateDB("a.db")
			rdb, _ := replica.CreateDB("a.db")
			writeTx(t, pdb, makeSQLiteFile(t, 5))
			shipAll(t, pdb, rdb)
			content := makeSQLiteFileOf(t, tt.rows, tt.blob)
			writeTx(t, pdb, content)
			f, err := pdb.OpenLTX(2)
			if err != nil {
				t.Fatal(err)
			}
			file, err := readAllClose(f)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, len(file), len(content)) // every page of the database changed
			if _, err := rdb.ApplyLTX(context.Background(), bytes.NewReader(file)); err != nil {
				t.Fatal(err)
			}
			if got, want := rdb.Pos(), pdb.Pos(); got != want {
				t.Fatalf("replica at %v, primary at %v", got, want)
			}
			if got, _ := os.ReadFile(rdb.path(FileDatabase)); !bytes.Equal(got, content) {
				t.Fatal("replica database file differs from the primary's")
			}
			stored, err := os.ReadFile(filepath.Join(rdb.LTXDir(), ltxFileName(2, 2)))
			if err != nil || !bytes.Equal(stored, file) {
				t.Fatalf("the replica's history does not hold the file as received (err %v)", err)
			}
			for _, dir := range []string{rdb.dir, rdb.LTXDir()} {
				if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) > 0 {
					t.Fatalf("temporary files left: %v", tmp)
				}
			}
		})
	}
}
