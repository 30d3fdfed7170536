package litefs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"

	"github.com/superfly/ltx"
)

// spoolRange spools src's LTX files for the given TXIDs into dst.
func spoolRange(t *testing.T, src, dst *DB, txids ...ltx.TXID) []*Incoming {
	t.Helper()
	var out []*Incoming
	for _, txid := range txids {
		f, err := src.OpenLTX(txid)
		if err != nil {
			t.Fatal(err)
		}
		in, err := dst.SpoolLTX(f)
		f.Close()
		if err != nil {
			t.Fatalf("spool txid %s: %v", txid, err)
		}
		out = append(out, in)
	}
	return out
}

func TestApplySpooled_AppliesABatchOrStopsAtTheFirstRefusedFile(t *testing.T) {
	for _, tt := range []struct {
		name    string
		txids   []ltx.TXID // shipped to a replica that holds TXID 1
		wantErr error
		wantPos ltx.TXID
	}{
		{"consecutive files", []ltx.TXID{2, 3, 4, 5}, nil, 5},
		{"a gap stops the batch after the files before it", []ltx.TXID{2, 3, 5}, ErrPosMismatch, 3},
		{"a first file that does not follow changes nothing", []ltx.TXID{3, 4}, ErrPosMismatch, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			primary := openTestStore(t, t.TempDir())
			pdb, _ := primary.CreateDB("a.db")
			for _, rows := range []int{10, 50, 20, 35, 60} {
				writeTx(t, pdb, makeSQLiteFile(t, rows)) // TXID 1 .. 5
			}
			replica := openTestStore(t, t.TempDir())
			r2, _ := replica.CreateDB("a.db")
			if _, err := r2.ApplySpooled(context.Background(), spoolRange(t, pdb, r2, 1)); err != nil {
				t.Fatal(err)
			}
			_, err := r2.ApplySpooled(context.Background(), spoolRange(t, pdb, r2, tt.txids...))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("apply error %v, want %v", err, tt.wantErr)
			}
			if got := r2.Pos().TXID; got != tt.wantPos {
				t.Fatalf("replica at TXID %s, want %s", got, tt.wantPos)
			}
			if tt.wantPos == pdb.Pos().TXID {
				a, _ := os.ReadFile(pdb.path(FileDatabase))
				b, _ := os.ReadFile(r2.path(FileDatabase))
				if !bytes.Equal(a, b) || r2.Pos() != pdb.Pos() {
					t.Fatal("replica differs from the primary after the batch")
				}
			}
			ents, _ := os.ReadDir(r2.LTXDir())
			for _, e := range ents {
				if len(e.Name()) > 4 && e.Name()[len(e.Name())-4:] == ".tmp" {
					t.Fatalf("spooled file %s left behind", e.Name())
				}
			}
		})
	}
}
