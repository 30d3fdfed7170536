package http

import (
	"bytes"
	nethttp "net/http"
	"testing"

	"github.com/litefs/litefs"
)

// A node that never opened a replication stream is a stranger: it may not
// take the HALT, renew one, or ship a transaction (SPEC 11), and nothing
// it sends changes the database.
func TestHalt_NodeWithoutAStreamIsRefused403AndChangesNothing(t *testing.T) {
	const stranger = "00000000000000ee"
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	before := snapshotDB(t, e.db)
	file := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	tests := []struct {
		name   string
		method string
		path   string
		body   []byte
	}{
		{"acquire", "POST", "/halt?name=a.db&id=" + lockA, nil},
		{"acquire without waiting", "POST", "/halt?name=a.db&wait=0&id=" + lockA, nil},
		{"renew", "POST", "/halt?name=a.db&renew=1&id=" + lockA, nil},
		{"forwarded transaction", "POST", "/tx?name=a.db&id=" + lockA, file},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := haltCall(t, tt.method, e.ts.URL+tt.path, stranger, bytes.NewReader(tt.body), nil)
			if code != nethttp.StatusForbidden {
				t.Fatalf("status %d %s, want 403", code, body)
			}
			apiRefusal(t, body, codeNoStream, stranger, "replication stream")
			if q := e.query(t); q.Held {
				t.Fatalf("HALT held by %s after a refused request", q.Holder)
			}
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}
	// A streaming node still gets it, and the stranger cannot use its lock.
	e.mustAcquire(t, nodeA, lockA)
	code, body := e.postTx(t, stranger, lockA, bytes.NewReader(file))
	if code != nethttp.StatusForbidden {
		t.Fatalf("stranger's /tx under another node's HALT: status %d %s, want 403", code, body)
	}
	before.mustEqual(t, snapshotDB(t, e.db))
}

// A stream that ends takes its node's right to the HALT with it: a request
// after the stream is gone is refused, not granted until the TTL.
func TestHalt_RefusedOnceTheNodesStreamHasEnded(t *testing.T) {
	const node = "00000000000000dd"
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	stop := openDrainedStream(t, e.ts.URL+"/stream", node, "")
	e.mustAcquire(t, node, lockA)
	e.release(t, node, lockA)
	stop()
	waitFor(t, "the stream to end", func() bool { return !e.srvStreaming(node) })
	code, body := e.acquire(t, node, lockB, "")
	if code != nethttp.StatusForbidden {
		t.Fatalf("acquire after the stream ended: status %d %s, want 403", code, body)
	}
	apiRefusal(t, body, codeNoStream, "replication stream")
}

// A stream filtered to other databases does not entitle its node to a HALT
// on this one: it could never catch up to the lock's position.
func TestHalt_RefusedToAStreamThatDoesNotCarryTheDatabase(t *testing.T) {
	const node = "00000000000000cc"
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	openDrainedStream(t, e.ts.URL+"/stream?filter=other.db", node, "")
	code, body := e.acquire(t, node, lockA, "")
	if code != nethttp.StatusForbidden {
		t.Fatalf("status %d %s, want 403", code, body)
	}
	apiRefusal(t, body, codeNoStream, "a.db")
}
