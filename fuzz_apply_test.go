package litefs

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/fuzzseed"
	"github.com/superfly/ltx"
)

// FuzzApplyLTX applies arbitrary bytes, as a file received from the primary,
// to a real database (a store on a temporary directory, at TXID 2 of a real
// SQLite history). A refused file must leave the database byte for byte as
// it was: position, database file, history and no temporary file left. An
// accepted one must leave the database file matching the position's
// checksum. Seeds: the next transaction, an earlier one, a snapshot, and
// damaged copies of them.
func FuzzApplyLTX(f *testing.F) {
	primary := fuzzOpenStore(f)
	pdb, err := primary.CreateDB("a.db")
	if err != nil {
		f.Fatal(err)
	}
	for _, rows := range []int{3, 6, 9} {
		writeTx(f, pdb, makeSQLiteFile(f, rows))
	}
	next, prev := fuzzReadLTX(f, pdb, 3), fuzzReadLTX(f, pdb, 2)
	var snap bytes.Buffer
	if _, err := pdb.WriteSnapshot(context.Background(), &snap); err != nil {
		f.Fatal(err)
	}
	// Damaged and wrong files first, while the replica is where next-tx
	// applies; then the two that move it.
	for _, s := range []struct {
		name string
		b    []byte
	}{{"old-tx", prev}, {"next-tx", next}, {"snapshot", snap.Bytes()}} {
		fuzzseed.Add(f, s.name+"-truncated", fuzzseed.Truncated(s.b))
		fuzzseed.Add(f, s.name+"-flipped-header", fuzzseed.Flipped(s.b, 40))
		fuzzseed.Add(f, s.name+"-flipped-page", fuzzseed.Flipped(s.b, ltx.HeaderSize+20))
	}
	fuzzseed.Add(f, "old-tx", prev)
	for name, commit := range map[string]uint32{"commit-grown": 0, "commit-huge": 1<<32 - 2} {
		b, err := fuzzseed.ReencodeLTX(next, func(h *ltx.Header) { h.Commit = max(h.Commit+1, commit) })
		if err != nil {
			f.Fatal(err)
		}
		fuzzseed.Add(f, name, b) // regression: applied, see apply_grow_test.go
	}
	fuzzseed.Add(f, "next-tx", next)
	fuzzseed.Add(f, "snapshot", snap.Bytes())

	replica := fuzzOpenStore(f)
	rdb, err := replica.CreateDB("a.db")
	if err != nil {
		f.Fatal(err)
	}
	for txid := ltx.TXID(1); txid <= 2; txid++ {
		if _, err := rdb.ApplyLTX(context.Background(), bytes.NewReader(fuzzReadLTX(f, pdb, txid))); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		before := fuzzDBState(t, rdb)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pos, err := rdb.ApplyLTX(ctx, bytes.NewReader(b))
		after := fuzzDBState(t, rdb)
		if err != nil {
			before.mustEqual(t, after)
			return
		}
		if after.pos != pos {
			t.Fatalf("applied at %v, the database says %v", pos, after.pos)
		}
		if sum := fuzzFileChecksum(after.file); sum != pos.PostApplyChecksum {
			t.Fatalf("database file checksum %s, position %v", sum, pos)
		}
	})
}

// fuzzOpenStore opens a store on a temporary directory, without fsyncs.
func fuzzOpenStore(tb testing.TB) *Store {
	tb.Helper()
	s, err := OpenStore(context.Background(), StoreOptions{Dir: tb.TempDir(), StrictVerify: true, SkipSync: true, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// fuzzReadLTX returns the LTX file of transaction txid of db.
func fuzzReadLTX(tb testing.TB, db *DB, txid ltx.TXID) []byte {
	tb.Helper()
	f, err := db.OpenLTX(txid)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := readAllClose(f)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// fuzzState is what a refused file must leave unchanged: the position, the
// database file and the names in the database and LTX directories.
type fuzzState struct {
	pos   ltx.Pos
	file  []byte
	names []string
}

// fuzzMaxFile bounds the database file a fuzz input may leave behind.
const fuzzMaxFile = 64 << 20

// fuzzDBState reads db's state.
func fuzzDBState(t *testing.T, db *DB) fuzzState {
	t.Helper()
	s := fuzzState{pos: db.Pos()}
	if fi, err := os.Stat(db.path(FileDatabase)); err == nil && fi.Size() > fuzzMaxFile {
		t.Fatalf("database file grew to %d bytes", fi.Size())
	}
	b, err := os.ReadFile(db.path(FileDatabase))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	s.file = b
	for _, dir := range []string{db.Dir(), db.LTXDir()} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			s.names = append(s.names, dir+"/"+e.Name())
		}
	}
	return s
}

// mustEqual fails t unless after equals s.
func (s fuzzState) mustEqual(t *testing.T, after fuzzState) {
	t.Helper()
	if after.pos != s.pos {
		t.Fatalf("refused, yet the position moved: %v -> %v", s.pos, after.pos)
	}
	if !bytes.Equal(after.file, s.file) {
		t.Fatalf("refused, yet the database file changed (%d -> %d bytes)", len(s.file), len(after.file))
	}
	if !slices.Equal(after.names, s.names) {
		t.Fatalf("refused, yet files changed: %v -> %v", s.names, after.names)
	}
}

// fuzzFileChecksum is the database checksum of a database file image: the
// flag bit and the XOR of every page's checksum but the lock page's.
func fuzzFileChecksum(b []byte) ltx.Checksum {
	var sum ltx.Checksum
	if len(b) < 100 {
		return ltx.ChecksumFlag
	}
	ps := uint32(binary.BigEndian.Uint16(b[16:]))
	if ps == 1 {
		ps = 65536
	}
	for pgno := uint32(1); int64(pgno)*int64(ps) <= int64(len(b)); pgno++ {
		if pgno != ltx.LockPgno(ps) {
			sum ^= PageChecksum(pgno, b[int64(pgno-1)*int64(ps):int64(pgno)*int64(ps)])
		}
	}
	return ltx.ChecksumFlag | sum
}
