package backup_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/litefs/litefs/backup"
	"github.com/litefs/litefs/internal/s3test"
	"github.com/litefs/litefs/internal/tlstest"
	"github.com/superfly/ltx"
)

// encodeLTX returns a one-page LTX file for txids min..max continuing pre.
func encodeLTX(t *testing.T, min, max ltx.TXID, pre, post ltx.Checksum) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ltx.NewEncoder(&buf)
	if err != nil {
		t.Fatal(err)
	}
	hdr := ltx.Header{Version: ltx.Version, PageSize: 4096, Commit: 1, MinTXID: min, MaxTXID: max,
		Timestamp: time.Now().UnixMilli(), PreApplyChecksum: pre}
	if min == 1 {
		hdr.PreApplyChecksum = 0
	}
	if err := enc.EncodeHeader(hdr); err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	page[0] = byte(max)
	if err := enc.EncodePage(ltx.PageHeader{Pgno: 1}, page); err != nil {
		t.Fatal(err)
	}
	enc.SetPostApplyChecksum(post)
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestClient_PutListHeadAgainstRealServer(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	c, err := backup.NewClient(ctx, srv.Config("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := c.Head(ctx, "app.db"); err != nil || h.Pos.TXID != 0 {
		t.Fatalf("Head of empty bucket = %+v, %v", h, err)
	}
	sum1, sum2 := ltx.ChecksumFlag|1, ltx.ChecksumFlag|2
	put := func(level int, min, max ltx.TXID, data []byte) {
		if err := c.PutLTX(ctx, "app.db", level, min, max, time.Now(), data); err != nil {
			t.Fatal(err)
		}
	}
	put(backup.SnapshotLevel, 1, 1, encodeLTX(t, 1, 1, 0, sum1))
	put(0, 2, 3, encodeLTX(t, 2, 3, sum1, sum2))
	if got := c.Key("app.db", 0, 2, 3); got != "prefix/app.db/0000/0000000000000002-0000000000000003.ltx" {
		t.Fatalf("Key = %s", got)
	}
	h, err := c.Head(ctx, "app.db")
	if err != nil {
		t.Fatal(err)
	}
	if h.Pos.TXID != 3 || h.Pos.PostApplyChecksum != sum2 || h.Snapshot.IsZero() {
		t.Fatalf("Head = %+v, want txid 3 checksum %s and a snapshot time", h, sum2)
	}
	infos, err := c.List(ctx, "app.db", 0)
	if err != nil || len(infos) != 1 || infos[0].MinTXID != 2 {
		t.Fatalf("List(0) = %+v, %v", infos, err)
	}
	rc, err := c.GetLTX(ctx, "app.db", infos[0])
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if len(got) == 0 || int64(len(got)) != infos[0].Size {
		t.Fatalf("GetLTX read %d bytes, listed %d", len(got), infos[0].Size)
	}
}

// TestNewClient_HonoursAWSCABundle: with AWS_CA_BUNDLE naming the CA of an
// HTTPS store, the client trusts it (Litestream v0.5.18 fails to start
// with AWS_CA_BUNDLE set: "unable to add custom RootCAs HTTPClient").
func TestNewClient_HonoursAWSCABundle(t *testing.T) {
	ca := tlstest.NewCA(t, "s3-ca")
	files := ca.WriteFiles(t, t.TempDir(), "s3")
	t.Setenv("AWS_CA_BUNDLE", files.CA)
	srv := s3test.StartTLS(t, s3test.TLS{Cert: files.Cert, Key: files.Key})
	ctx := context.Background()
	c, err := backup.NewClient(ctx, srv.Config(""))
	if err != nil {
		t.Fatalf("NewClient with AWS_CA_BUNDLE: %v", err)
	}
	if _, err := c.List(ctx, "x.db", 0); err != nil {
		t.Fatalf("List over HTTPS trusted through AWS_CA_BUNDLE: %v", err)
	}
}
