package litefs

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/superfly/ltx"
)

// TestPrepareSnapshot_CloseGivesTheLockBackAndRemovesTheCopy: the copy runs
// in the background under SQLite's SHARED lock; closing the snapshot,
// encoded or not (the copy then stops early), always gives the lock back
// and removes the copy.
func TestPrepareSnapshot_CloseGivesTheLockBackAndRemovesTheCopy(t *testing.T) {
	for _, tt := range []struct {
		name   string
		encode bool
	}{
		{"closed after encoding", true},
		{"closed before encoding", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := primaryWithRows(t, 20000) // several copy chunks
			snap, err := db.PrepareSnapshot(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tt.encode {
				var buf bytes.Buffer
				if _, err := snap.Encode(context.Background(), &buf); err != nil {
					t.Fatal(err)
				}
				want, _ := os.ReadFile(db.path(FileDatabase))
				got := decodeSnapshotBytes(t, buf.Bytes())
				if !bytes.Equal(got, want) {
					t.Fatalf("snapshot decodes to %d bytes unlike the %d-byte database", len(got), len(want))
				}
			}
			copyPath := snap.img.f.Name()
			snap.Close()
			if !db.Locks(FileDatabase).TryLock(1, 1, 1, LockWrite, SharedFirst, SharedFirst+SharedSize-1) {
				t.Fatal("the snapshot kept its SHARED lock after Close")
			}
			if _, err := os.Stat(copyPath); !os.IsNotExist(err) {
				t.Fatalf("the snapshot's copy is still there: %v", err)
			}
		})
	}
}

// decodeSnapshotBytes decodes a snapshot LTX file into the database file it
// describes.
func decodeSnapshotBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var out []byte
	hdr, _, err := decodeSnapshotLTX(bytes.NewReader(b), func(h ltx.Header, pgno uint32, data []byte) error {
		end := int(pgno) * int(h.PageSize)
		out = append(out, make([]byte, max(0, end-len(out)))...)
		copy(out[end-int(h.PageSize):], data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, make([]byte, max(0, int(hdr.Commit)*int(hdr.PageSize)-len(out)))...)
}
