package litefs

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/litefs/litefs/internal/fuzzseed"
	"github.com/superfly/ltx"
)

// A file whose checksums are all right but whose commit size grows the
// database past the pages it carries was applied: the new pages were left
// as zeros in the database file, which the position's checksum did not
// describe, and a commit size near 2^32 made the checksum table allocate
// 8 bytes per claimed page. Found by FuzzTx.
func TestApplyLTX_RefusesAFileThatGrowsTheDatabaseWithoutItsPages(t *testing.T) {
	primary := fuzzOpenStore(t)
	pdb, _ := primary.CreateDB("a.db")
	writeTx(t, pdb, makeSQLiteFile(t, 3))
	writeTx(t, pdb, makeSQLiteFile(t, 40)) // grows the database
	first, next := fuzzReadLTX(t, pdb, 1), fuzzReadLTX(t, pdb, 2)
	for _, tt := range []struct {
		name   string
		commit func(uint32) uint32
	}{
		{"one page more than carried", func(c uint32) uint32 { return c + 1 }},
		{"commit size near 2^32", func(uint32) uint32 { return 1<<32 - 2 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rdb, _ := fuzzOpenStore(t).CreateDB("a.db")
			if _, err := rdb.ApplyLTX(context.Background(), bytes.NewReader(first)); err != nil {
				t.Fatal(err)
			}
			bad, err := fuzzseed.ReencodeLTX(next, func(h *ltx.Header) { h.Commit = tt.commit(h.Commit) })
			if err != nil {
				t.Fatal(err)
			}
			before := fuzzDBState(t, rdb)
			_, err = rdb.ApplyLTX(context.Background(), bytes.NewReader(bad))
			if err == nil || !strings.Contains(err.Error(), "does not carry page") {
				t.Fatalf("error %v, want a refusal naming the missing page", err)
			}
			before.mustEqual(t, fuzzDBState(t, rdb))
			if _, err := rdb.ApplyLTX(context.Background(), bytes.NewReader(next)); err != nil {
				t.Fatalf("the file as sent by the primary: %v", err)
			}
		})
	}
}
