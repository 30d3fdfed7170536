package http

import (
	"bytes"
	"context"
	"encoding/binary"
	nethttp "net/http"
	"net/url"
	"testing"

	"github.com/litefs/litefs/internal/fuzzseed"
	"github.com/superfly/ltx"
)

// Fuzz targets for the request handlers of the node-to-node API that take
// input from the network: /halt, /tx and /import, against a real primary
// (fuzzEnv). See docs/ARCHITECTURE.md, "Fuzzing".

// fuzzHaltMethods are the methods FuzzHalt picks from.
var fuzzHaltMethods = []string{"POST", "DELETE", "GET"}

// FuzzHalt sends POST, DELETE and GET /halt with an arbitrary query and
// Litefs-Id header. No request changes a database; a refusal is a 4xx (or
// 503) with a message. Any lock granted is released after the input.
func FuzzHalt(f *testing.F) {
	e := newFuzzEnv(f)
	e.streamNodes(f)
	for i, s := range []struct {
		method uint8
		query  string
		node   string
	}{
		{0, "name=a.db&id=" + lockA, nodeA},
		{0, "name=a.db&id=" + lockA + "&wait=0", nodeA},
		{0, "name=a.db&id=" + lockA + "&renew=1", nodeA},
		{1, "name=a.db&id=" + lockA, nodeA},
		{2, "name=a.db", ""},
		{0, "name=nope.db&id=" + lockB, nodeB},
		{0, "name=a.db&id=0000000000000000", nodeA},
		{0, "name=../a.db&id=" + lockA, "zz"},
		{0, "name=a.db&id=" + lockA + "&wait=maybe", nodeA},
	} {
		fuzzseed.Add(f, "request-"+string(rune('a'+i)), s.method, s.query, s.node)
	}
	f.Fuzz(func(t *testing.T, method uint8, query, node string) {
		before := e.state(t)
		code, body, ok := e.serve(fuzzHaltMethods[int(method)%len(fuzzHaltMethods)], "/halt?"+query, node, nil)
		if l, held := e.db.HaltHolder(); held {
			e.db.ReleaseHalt(l.ID, l.Holder)
		}
		if !ok {
			return
		}
		if code != nethttp.StatusOK {
			checkRefusal(t, code, body)
		}
		before.mustEqual(t, e.state(t), "/halt")
		e.checkClean(t)
	})
}

// FuzzTx sends POST /tx with an arbitrary query, Litefs-Id header and body
// while node A holds the HALT lock of a.db under lock id A. A refused
// request leaves every database byte for byte as it was; an accepted one
// moves a.db by one transaction whose checksum the file matches. Seeds: the
// real next transaction, damaged copies of it, and wrong ids.
func FuzzTx(f *testing.F) {
	e := newFuzzEnv(f)
	e.streamNodes(f)
	lock, holder := fuzzMustParseID(f, lockA), fuzzMustParseID(f, nodeA)
	acquire := func(tb testing.TB) {
		if _, err := e.db.AcquireHalt(context.Background(), lock, holder, false); err != nil {
			tb.Fatal(err)
		}
	}
	acquire(f)
	tx := forwardedTx(f, e.db, makeSQLiteFile(f, 5), nil)
	query := "name=a.db&id=" + lockA
	fuzzseed.Add(f, "next-tx-truncated", query, nodeA, fuzzseed.Truncated(tx))
	fuzzseed.Add(f, "next-tx-flipped-header", query, nodeA, fuzzseed.Flipped(tx, 50))
	fuzzseed.Add(f, "next-tx-flipped-page", query, nodeA, fuzzseed.Flipped(tx, ltx.HeaderSize+30))
	fuzzseed.Add(f, "wrong-holder", query, nodeB, tx)
	fuzzseed.Add(f, "wrong-lock", "name=a.db&id="+lockB, nodeA, tx)
	fuzzseed.Add(f, "other-db", "name=b.db&id="+lockA, nodeA, tx)
	fuzzseed.Add(f, "empty", query, nodeA, []byte{})
	// Valid files (checksums right) whose header claims another size.
	for name, commit := range map[string]func(uint32) uint32{
		"commit-grown":  func(c uint32) uint32 { return c + 1 },
		"commit-shrunk": func(c uint32) uint32 { return c - 1 },
		"commit-huge":   func(uint32) uint32 { return 1<<32 - 2 },
	} {
		b, err := fuzzseed.ReencodeLTX(tx, func(hdr *ltx.Header) { hdr.Commit = commit(hdr.Commit) })
		if err != nil {
			f.Fatal(err)
		}
		fuzzseed.Add(f, name, query, nodeA, b)
	}
	fuzzseed.Add(f, "next-tx", query, nodeA, tx) // last: the others find a.db where tx applies
	f.Fuzz(func(t *testing.T, query, node string, body []byte) {
		before := e.state(t)
		code, resp, ok := e.serve("POST", "/tx?"+query, node, body)
		if l, held := e.db.HaltHolder(); !held || l.ID != lock || l.Holder != holder {
			if held {
				e.db.ReleaseHalt(l.ID, l.Holder)
			}
			acquire(t)
		}
		if !ok {
			return
		}
		after := e.state(t)
		e.checkClean(t)
		if code != nethttp.StatusOK {
			checkRefusal(t, code, resp)
			before.mustEqual(t, after, "refused /tx")
			return
		}
		was, now := before["a.db"], after["a.db"]
		if now.pos.TXID != was.pos.TXID+1 {
			t.Fatalf("accepted /tx moved a.db from %v to %v", was.pos, now.pos)
		}
		fuzzCheckFileChecksum(t, now)
		delete(before, "a.db")
		delete(after, "a.db")
		before.mustEqual(t, after, "accepted /tx on a.db")
	})
}

// FuzzImport sends POST /import with an arbitrary name and body. A refused
// import leaves every database as it was and creates none; an accepted one
// changes only the named database, to the imported file (change counter
// aside), with a matching checksum. Seeds: real SQLite files, damaged
// copies, and a file that is not a database.
func FuzzImport(f *testing.F) {
	e := newFuzzEnv(f)
	small, wal := makeSQLiteFile(f, 2), makeWALFile(f, 2)
	fuzzseed.Add(f, "sqlite", "a.db", small)
	fuzzseed.Add(f, "sqlite-new-db", "c.db", small)
	fuzzseed.Add(f, "sqlite-wal-mode", "b.db", wal)
	fuzzseed.Add(f, "sqlite-truncated", "a.db", fuzzseed.Truncated(small))
	fuzzseed.Add(f, "sqlite-flipped-header", "a.db", fuzzseed.Flipped(small, 17))
	fuzzseed.Add(f, "sqlite-flipped-page", "a.db", fuzzseed.Flipped(small, len(small)-100))
	fuzzseed.Add(f, "not-sqlite", "a.db", []byte("SQLite format 2\x00 and then some"))
	fuzzseed.Add(f, "bad-name", "../x", small)
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		before := e.state(t)
		target := "/import?name=" + url.QueryEscape(name)
		code, resp, ok := e.serve("POST", target, "", body)
		if !ok {
			return
		}
		after := e.state(t)
		e.checkClean(t)
		if code != nethttp.StatusOK {
			checkRefusal(t, code, resp)
			before.mustEqual(t, after, "refused /import")
			return
		}
		now, exists := after[name]
		if !exists {
			t.Fatalf("import of %q accepted, but there is no such database", name)
		}
		if !fuzzSameImport(now.file, body) {
			t.Fatalf("import of %q accepted, but the database file differs from the imported one", name)
		}
		fuzzCheckFileChecksum(t, now)
		delete(before, name)
		delete(after, name)
		before.mustEqual(t, after, "accepted /import of "+name)
	})
}

// fuzzSameImport reports whether the database file got equals the imported
// file want, except for the change counter and version-valid-for number,
// which an import raises.
func fuzzSameImport(got, want []byte) bool {
	if len(got) != len(want) || len(got) < 100 {
		return false
	}
	g, w := bytes.Clone(got), bytes.Clone(want)
	for _, b := range [][]byte{g, w} {
		binary.BigEndian.PutUint32(b[24:], 0)
		binary.BigEndian.PutUint32(b[92:], 0)
	}
	return bytes.Equal(g, w)
}

// fuzzCheckFileChecksum fails t unless a database file matches the
// checksum of its position.
func fuzzCheckFileChecksum(t *testing.T, s dbState) {
	t.Helper()
	if len(s.file) < 100 {
		t.Fatalf("database at %v has a %d-byte file", s.pos, len(s.file))
	}
	if sum := dbChecksum(s.file, pageSizeOf(t, s.file)); sum != s.pos.PostApplyChecksum {
		t.Fatalf("database file checksum %s, position %v", sum, s.pos)
	}
}

// fuzzMustParseID parses a 16-hex-digit id.
func fuzzMustParseID(tb testing.TB, s string) uint64 {
	tb.Helper()
	id, err := parseNodeID(s)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
