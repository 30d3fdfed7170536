package litefs

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"

	"github.com/superfly/ltx"
)

// ltx v0.5.3's decoder allocates a page block's declared size before
// reading it: 11 bytes changed in a received file cost gigabytes (found by
// FuzzApplyLTX, which the fuzzing process's memory then ended). decodeLTX
// must refuse such a size before the decoder allocates for it, and still
// read what the primary writes.
func TestDecodeLTX_RefusesABlockSizeOutOfRangeBeforeAllocating(t *testing.T) {
	s := fuzzOpenStore(t)
	db, _ := s.CreateDB("a.db")
	writeTx(t, db, makeSQLiteFile(t, 20))
	good := fuzzReadLTX(t, db, 1)
	if _, _, err := decodeLTX(bytes.NewReader(good), nil); err != nil {
		t.Fatalf("the primary's own file: %v", err)
	}
	sizeAt := ltx.HeaderSize + ltx.PageHeaderSize // the first page's block size
	for _, tt := range []struct {
		name  string
		edit  func(b []byte)
		wants string
	}{
		{"block size near 4 GiB", func(b []byte) { binary.BigEndian.PutUint32(b[sizeAt:], 0xF0000000) }, "block size 4026531840 out of range"},
		{"block size zero", func(b []byte) { binary.BigEndian.PutUint32(b[sizeAt:], 0) }, "block size 0 out of range"},
		{"old LZ4-frame page format", func(b []byte) { binary.BigEndian.PutUint16(b[sizeAt-2:], 0) }, "flags 0x0000"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := bytes.Clone(good)
			tt.edit(b)
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.TotalAlloc
			_, _, err := decodeLTX(bytes.NewReader(b), nil)
			runtime.ReadMemStats(&ms)
			if err == nil || !strings.Contains(err.Error(), tt.wants) {
				t.Fatalf("error %v, want it to say %q", err, tt.wants)
			}
			if got := ms.TotalAlloc - before; got > 16<<20 {
				t.Fatalf("refusing a %d-byte file allocated %d MB", len(b), got>>20)
			}
		})
	}
}
