package litefs

import (
	"bytes"
	"io"
	"testing"

	"github.com/superfly/ltx"
)

// encodeOne encodes a one-page transaction with enc into a file.
func encodeOne(t testing.TB, enc *ltx.Encoder, txid ltx.TXID, pgno uint32, fill byte) {
	t.Helper()
	page := bytes.Repeat([]byte{fill}, 4096)
	hdr := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 8, MinTXID: txid, MaxTXID: txid, Timestamp: 1}
	if txid > 1 {
		hdr.PreApplyChecksum = ltx.ChecksumFlag | ltx.Checksum(txid)
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	if err := enc.EncodePage(ltx.PageHeader{Pgno: pgno}, page); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(ltx.ChecksumFlag | ltx.Checksum(txid+1))
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestEncoderCache_ReusedEncoderWritesTheSameFilesAsAFreshOne(t *testing.T) {
	var cache encoderCache
	for _, tt := range []struct {
		name string
		txid ltx.TXID
		pgno uint32
		fill byte
	}{
		{"first use", 2, 3, 0x11},
		{"after a commit", 3, 5, 0x22},
		{"after an abandoned encoder", 4, 2, 0x33},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "after an abandoned encoder" {
				enc, err := cache.get(io.Discard)
				if err != nil {
					t.Fatal(err)
				}
				if err := enc.EncodeHeader(ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 8, MinTXID: 9, MaxTXID: 9, PreApplyChecksum: ltx.ChecksumFlag | 1, Timestamp: 1}); err != nil {
					t.Fatal(err)
				}
				_ = enc.Cleanup()
			}
			var want, got bytes.Buffer
			fresh, _ := ltx.NewEncoder(&want)
			encodeOne(t, fresh, tt.txid, tt.pgno, tt.fill)
			enc, err := cache.get(&got)
			if err != nil {
				t.Fatal(err)
			}
			encodeOne(t, enc, tt.txid, tt.pgno, tt.fill)
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("reused encoder wrote %d bytes that differ from a fresh encoder's %d", got.Len(), want.Len())
			}
			if _, _, err := decodeLTX(bytes.NewReader(got.Bytes()), nil); err != nil {
				t.Fatalf("decode: %v", err)
			}
		})
	}
}

// BenchmarkEncoderCache compares one single-page LTX file per commit with a
// new encoder each time and with the cache.
func BenchmarkEncoderCache(b *testing.B) {
	var buf bytes.Buffer
	b.Run("new", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			buf.Reset()
			enc, _ := ltx.NewEncoder(&buf)
			encodeOne(b, enc, 2, 3, byte(i))
		}
	})
	b.Run("cache", func(b *testing.B) {
		var cache encoderCache
		for i := 0; i < b.N; i++ {
			buf.Reset()
			enc, _ := cache.get(&buf)
			encodeOne(b, enc, 2, 3, byte(i))
		}
	})
}
