package http

import (
	"bytes"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs"
)

func TestHaltAcquire_GrantsTheLockAtTheDatabasePosition(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: 2 * time.Second}, ServerOptions{})
	start := time.Now()
	h := e.mustAcquire(t, nodeA, lockA)
	want := NewPosJSON(e.db.Pos())
	if !h.Held || h.ID != lockA || h.Holder != nodeA || h.Pos != want {
		t.Fatalf("grant %+v, want held by %s under %s at %+v", h, nodeA, lockA, want)
	}
	if h.Expires.Before(start.Add(2*time.Second)) || h.Expires.After(time.Now().Add(2*time.Second)) {
		t.Fatalf("expires %v, want one halt.ttl (2s) after the grant at %v", h.Expires, start)
	}
	if q := e.query(t); q != h {
		t.Fatalf("GET /halt %+v, want %+v", q, h)
	}

	// Asking again with the same id and holder returns the same lock.
	if again := e.mustAcquire(t, nodeA, lockA); again != h {
		t.Fatalf("second acquire by the holder %+v, want %+v", again, h)
	}
	if !e.release(t, nodeA, lockA) {
		t.Fatal("release reported the lock was not held")
	}
	if q := e.query(t); q.Held || q.ID != "" || q.Holder != "" || q.Pos != want {
		t.Fatalf("GET /halt after release %+v, want not held at %+v", q, want)
	}
}

func TestHaltAcquire_SecondHolderWithoutWaitIsBusy(t *testing.T) {
	tests := []struct {
		name  string
		extra string
	}{
		{"wait=false", "&wait=false"},
		{"wait=0", "&wait=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
			first := e.mustAcquire(t, nodeA, lockA)
			start := time.Now()
			code, body := e.acquire(t, nodeB, lockB, tt.extra)
			if code != nethttp.StatusConflict {
				t.Fatalf("status %d %s, want 409", code, body)
			}
			apiRefusal(t, body, codeBusy, "busy")
			if d := time.Since(start); d > time.Second {
				t.Fatalf("refusal took %s, want at once", d)
			}
			if q := e.query(t); q != first {
				t.Fatalf("holder changed: %+v, want %+v", q, first)
			}
		})
	}
}

type haltResult struct {
	who  string
	code int
	body string
}

func TestHaltAcquire_WaitersGetTheLockInArrivalOrderAfterRelease(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	e.mustAcquire(t, nodeA, lockA)

	results := make(chan haltResult, 2)
	wait := func(node, id string) {
		go func() {
			code, body, err := rawHaltCall("POST", e.ts.URL+"/halt?name=a.db&id="+id, node, nil, nil)
			if err != nil {
				body = err.Error()
			}
			results <- haltResult{node, code, body}
		}()
	}
	noResult := func(d time.Duration, why string) {
		t.Helper()
		select {
		case r := <-results:
			t.Fatalf("%s answered %d %s while %s", r.who, r.code, r.body, why)
		case <-time.After(d):
		}
	}
	next := func() haltResult {
		t.Helper()
		select {
		case r := <-results:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no waiter was granted the lock within 5s of its release")
		}
		return haltResult{}
	}

	wait(nodeB, lockB)
	noResult(200*time.Millisecond, "A holds the lock") // B is queued first
	wait(nodeC, lockC)
	noResult(200*time.Millisecond, "A holds the lock")

	if !e.release(t, nodeA, lockA) {
		t.Fatal("release of A reported not held")
	}
	r := next()
	if h := decodeHaltJSON(t, r.body); r.code != 200 || r.who != nodeB || h.Holder != nodeB || h.ID != lockB || h.Pos != NewPosJSON(e.db.Pos()) {
		t.Fatalf("first grant after release: %s %d %s, want B (arrived first)", r.who, r.code, r.body)
	}
	noResult(300*time.Millisecond, "B holds the lock")

	if !e.release(t, nodeB, lockB) {
		t.Fatal("release of B reported not held")
	}
	r = next()
	if h := decodeHaltJSON(t, r.body); r.code != 200 || r.who != nodeC || h.Holder != nodeC || h.ID != lockC {
		t.Fatalf("grant after B's release: %s %d %s, want C", r.who, r.code, r.body)
	}
	if q := e.query(t); q.Holder != nodeC {
		t.Fatalf("GET /halt %+v, want held by C", q)
	}
}

func TestHaltAcquire_WaitsForALocalWriterUpToTheAcquireTimeout(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{HaltAcquireTimeout: 300 * time.Millisecond}, ServerOptions{})
	dbl := e.db.Locks(litefs.FileDatabase)
	if !dbl.TryLock(otherOwner, otherOwner, 1, litefs.LockWrite, litefs.ReservedByte, litefs.ReservedByte) {
		t.Fatal("local writer could not take RESERVED")
	}
	unlock := func() {
		dbl.TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, litefs.ReservedByte, litefs.ReservedByte)
	}
	defer unlock()

	tests := []struct {
		name    string
		extra   string
		atLeast time.Duration
		why     string
	}{
		{"no wait", "&wait=false", 0, "busy"},
		{"wait times out", "", 300 * time.Millisecond, "acquire-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, body := e.acquire(t, nodeA, lockA, tt.extra)
			d := time.Since(start)
			if code != nethttp.StatusConflict {
				t.Fatalf("status %d %s, want 409", code, body)
			}
			apiRefusal(t, body, codeBusy, tt.why)
			if d < tt.atLeast || d > tt.atLeast+2*time.Second {
				t.Fatalf("answered after %s, want about %s", d, tt.atLeast)
			}
			if q := e.query(t); q.Held {
				t.Fatalf("GET /halt %+v, want not held", q)
			}
		})
	}

	// A waiting request is granted as soon as the local writer is done.
	e2 := newHaltEnv(t, litefs.StoreOptions{HaltAcquireTimeout: 5 * time.Second}, ServerOptions{})
	dbl2 := e2.db.Locks(litefs.FileDatabase)
	if !dbl2.TryLock(otherOwner, otherOwner, 1, litefs.LockWrite, litefs.ReservedByte, litefs.ReservedByte) {
		t.Fatal("local writer could not take RESERVED")
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		dbl2.TryLock(otherOwner, otherOwner, 1, litefs.LockUnlock, litefs.ReservedByte, litefs.ReservedByte)
	}()
	start := time.Now()
	h := e2.mustAcquire(t, nodeA, lockA)
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second || h.Holder != nodeA {
		t.Fatalf("granted %+v after %s, want right after the writer's release at 200ms", h, d)
	}
}

func TestHaltRenew_ExtendsExpiryAndFailsForALockNotHeld(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: 2 * time.Second}, ServerOptions{})
	code, body := e.acquire(t, nodeA, lockA, "&renew=1")
	if code != nethttp.StatusConflict {
		t.Fatalf("renew with nothing held: %d %s, want 409", code, body)
	}
	apiRefusal(t, body, codeNotHeld, "no HALT is held")

	first := e.mustAcquire(t, nodeA, lockA)
	time.Sleep(20 * time.Millisecond)
	code, body = e.acquire(t, nodeA, lockA, "&renew=1")
	if code != 200 {
		t.Fatalf("renew by the holder: %d %s", code, body)
	}
	renewed := decodeHaltJSON(t, body)
	if !renewed.Expires.After(first.Expires) || renewed.ID != lockA || renewed.Holder != nodeA || renewed.Pos != first.Pos {
		t.Fatalf("renewed %+v, want %+v with a later expiry", renewed, first)
	}
	if q := e.query(t); q.Expires != renewed.Expires {
		t.Fatalf("GET /halt expires %v, want %v", q.Expires, renewed.Expires)
	}

	tests := []struct {
		name, node, id, why string
	}{
		{"wrong lock id", nodeA, lockB, "not the current lock"},
		{"other node", nodeB, lockA, "not the holder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.acquire(t, tt.node, tt.id, "&renew=true")
			if code != nethttp.StatusConflict {
				t.Fatalf("status %d %s, want 409", code, body)
			}
			apiRefusal(t, body, codeNotHeld, tt.why)
			if q := e.query(t); q != renewed {
				t.Fatalf("lock changed: %+v, want %+v", q, renewed)
			}
		})
	}
}

func TestHaltTTL_RenewedLockOutlivesTheTTL(t *testing.T) {
	ttl := 300 * time.Millisecond
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: ttl}, ServerOptions{})
	h := e.mustAcquire(t, nodeA, lockA)
	for end := time.Now().Add(4 * ttl); time.Now().Before(end); {
		time.Sleep(ttl / 4)
		code, body := e.acquire(t, nodeA, lockA, "&renew=1")
		if code != 200 {
			t.Fatalf("renew: %d %s", code, body)
		}
		r := decodeHaltJSON(t, body)
		if !r.Expires.After(h.Expires) {
			t.Fatalf("renewal did not move the expiry: %v then %v", h.Expires, r.Expires)
		}
		h = r
	}
	if q := e.query(t); !q.Held || q.Holder != nodeA {
		t.Fatalf("GET /halt %+v, want still held by A", q)
	}

	// Once the renewals stop it expires one TTL after the last one.
	last := time.Now()
	waitFor(t, "the HALT to expire after the last renewal", func() bool { return !e.query(t).Held })
	if d := time.Since(last); d < ttl-50*time.Millisecond || d > ttl+2*time.Second {
		t.Fatalf("expired %s after the last renewal, want about halt.ttl (%s)", d, ttl)
	}
}

func TestHaltTTL_UnrenewedLockExpiresAndANewHolderAcquires(t *testing.T) {
	ttl := 300 * time.Millisecond
	e := newHaltEnv(t, litefs.StoreOptions{HaltTTL: ttl}, ServerOptions{})
	start := time.Now()
	e.mustAcquire(t, nodeA, lockA)
	waitFor(t, "the HALT to expire", func() bool { return !e.query(t).Held })
	if d := time.Since(start); d < ttl || d > ttl+2*time.Second {
		t.Fatalf("expired after %s, want about halt.ttl (%s)", d, ttl)
	}
	if reserved, walWrite := tryWriterLocks(e.db); !reserved || !walWrite {
		t.Fatalf("local writers still locked out after expiry (reserved %v, wal write %v)", reserved, walWrite)
	}

	code, body := e.acquire(t, nodeA, lockA, "&renew=1")
	if code != nethttp.StatusConflict {
		t.Fatalf("renew of the expired lock: %d %s, want 409", code, body)
	}
	apiRefusal(t, body, codeNotHeld, "not held")
	if h := e.mustAcquire(t, nodeB, lockB); h.Holder != nodeB {
		t.Fatalf("new holder %+v, want B", h)
	}
	if e.release(t, nodeA, lockA) {
		t.Fatal("release of the expired lock reported released")
	}
	if q := e.query(t); q.Holder != nodeB {
		t.Fatalf("the old holder's release changed the lock: %+v", q)
	}
}

func TestReleaseHaltsOf_DropsTheHoldersLock(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	e.mustAcquire(t, nodeA, lockA)
	e.store.ReleaseHaltsOf(0xb2) // another node: nothing happens
	if q := e.query(t); q.Holder != nodeA {
		t.Fatalf("GET /halt %+v, want still held by A", q)
	}
	e.store.ReleaseHaltsOf(0xa1)
	if q := e.query(t); q.Held {
		t.Fatalf("GET /halt %+v, want not held", q)
	}
	code, body := e.acquire(t, nodeA, lockA, "&renew=1")
	if code != nethttp.StatusConflict {
		t.Fatalf("renew of the dropped lock: %d %s, want 409", code, body)
	}
	apiRefusal(t, body, codeNotHeld, "not held")
	if h := e.mustAcquire(t, nodeB, lockB); h.Holder != nodeB {
		t.Fatalf("new holder %+v, want B", h)
	}
}

func TestHaltRelease_OfALockNotHeldIsANoOp(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	held := e.mustAcquire(t, nodeA, lockA)
	tests := []struct {
		name, node, id string
	}{
		{"wrong lock id", nodeA, lockB},
		{"other node", nodeB, lockA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e.release(t, tt.node, tt.id) {
				t.Fatal("reported released")
			}
			if q := e.query(t); q != held {
				t.Fatalf("lock changed: %+v, want %+v", q, held)
			}
		})
	}
}

func TestHaltRequests_MalformedAre400AndChangeNothing(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	before := snapshotDB(t, e.db)
	body := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	tests := []struct {
		name   string
		method string
		path   string
		node   string
		why    string
	}{
		{"acquire parent path", "POST", "/halt?name=../x&id=" + lockA, nodeA, "name"},
		{"acquire slash", "POST", "/halt?name=a/b&id=" + lockA, nodeA, "name"},
		{"acquire empty name", "POST", "/halt?name=&id=" + lockA, nodeA, "name"},
		{"acquire missing name", "POST", "/halt?id=" + lockA, nodeA, "name"},
		{"acquire dotdot", "POST", "/halt?name=..&id=" + lockA, nodeA, "name"},
		{"release parent path", "DELETE", "/halt?name=../x&id=" + lockA, nodeA, "name"},
		{"query slash", "GET", "/halt?name=a/b", "", "name"},
		{"query missing name", "GET", "/halt", "", "name"},
		{"tx parent path", "POST", "/tx?name=../a.db&id=" + lockA, nodeA, "name"},
		{"tx slash", "POST", "/tx?name=x/a.db&id=" + lockA, nodeA, "name"},
		{"acquire id zero", "POST", "/halt?name=a.db&id=0000000000000000", nodeA, "lock id"},
		{"acquire id not hex", "POST", "/halt?name=a.db&id=zzzzzzzzzzzzzzzz", nodeA, "lock id"},
		{"acquire id too short", "POST", "/halt?name=a.db&id=1", nodeA, "lock id"},
		{"acquire id missing", "POST", "/halt?name=a.db", nodeA, "lock id"},
		{"acquire no Litefs-Id", "POST", "/halt?name=a.db&id=" + lockA, "", "Litefs-Id"},
		{"acquire bad Litefs-Id", "POST", "/halt?name=a.db&id=" + lockA, "not-hex", "Litefs-Id"},
		{"acquire bad wait", "POST", "/halt?name=a.db&id=" + lockA + "&wait=maybe", nodeA, "wait"},
		{"release id zero", "DELETE", "/halt?name=a.db&id=0000000000000000", nodeA, "lock id"},
		{"release no Litefs-Id", "DELETE", "/halt?name=a.db&id=" + lockA, "", "Litefs-Id"},
		{"tx id zero", "POST", "/tx?name=a.db&id=0000000000000000", nodeA, "lock id"},
		{"tx id not hex", "POST", "/tx?name=a.db&id=xyz", nodeA, "lock id"},
		{"tx no Litefs-Id", "POST", "/tx?name=a.db&id=" + lockA, "", "Litefs-Id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, bytes.NewReader(body), nil)
			if code != nethttp.StatusBadRequest {
				t.Fatalf("status %d %s, want 400", code, resp)
			}
			if !strings.Contains(resp, tt.why) {
				t.Fatalf("message %q does not mention %q", resp, tt.why)
			}
			if names := dbNames(t, e.store); len(names) != 1 || names[0] != "a.db" {
				t.Fatalf("databases now %v, want [a.db]", names)
			}
			ents, err := os.ReadDir(filepath.Join(e.dir, "dbs"))
			if err != nil || len(ents) != 1 || ents[0].Name() != "a.db" {
				t.Fatalf("data directory dbs/ holds %v (%v), want a.db only", ents, err)
			}
			if q := e.query(t); q.Held {
				t.Fatalf("GET /halt %+v, want not held", q)
			}
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}
}

func TestHaltRequests_UnknownDatabaseIs404(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	tests := []struct{ method, path, node string }{
		{"POST", "/halt?name=nope.db&id=" + lockA, nodeA},
		{"DELETE", "/halt?name=nope.db&id=" + lockA, nodeA},
		{"GET", "/halt?name=nope.db", ""},
		{"POST", "/tx?name=nope.db&id=" + lockA, nodeA},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, strings.NewReader("x"), nil)
			if code != nethttp.StatusNotFound {
				t.Fatalf("status %d %s, want 404", code, body)
			}
			apiRefusal(t, body, codeNotFound, "nope.db", "not found")
			if e.store.DB("nope.db") != nil {
				t.Fatal("nope.db was created")
			}
		})
	}
}

func TestHaltRequests_OnAReplicaAre503NotPrimary(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{})
	before := snapshotDB(t, e.db)
	e.store.SetReplica(&litefs.PrimaryInfo{Hostname: "node-1", AdvertiseURL: "http://node-1:20202"})
	body := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	tests := []struct{ method, path, node string }{
		{"POST", "/halt?name=a.db&id=" + lockA, nodeA},
		{"POST", "/halt?name=a.db&id=" + lockA + "&renew=1", nodeA},
		{"DELETE", "/halt?name=a.db&id=" + lockA, nodeA},
		{"GET", "/halt?name=a.db", ""},
		{"POST", "/tx?name=a.db&id=" + lockA, nodeA},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, resp := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, bytes.NewReader(body), nil)
			if code != nethttp.StatusServiceUnavailable {
				t.Fatalf("status %d %s, want 503", code, resp)
			}
			apiRefusal(t, resp, codeNotPrimary, "primary")
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}
	if _, held := e.db.HaltHolder(); held {
		t.Fatal("a HALT was granted on a replica")
	}
}

func TestHaltRequests_AuthTokenRequired(t *testing.T) {
	e := newHaltEnv(t, litefs.StoreOptions{}, ServerOptions{AuthToken: "s3cret"})
	before := snapshotDB(t, e.db)
	body := forwardedTx(t, e.db, nextContent(t, e.db, 5), nil)
	tests := []struct {
		name, method, path, node, auth string
		want                           int
	}{
		{"acquire without token", "POST", "/halt?name=a.db&id=" + lockA, nodeA, "", 401},
		{"acquire wrong token", "POST", "/halt?name=a.db&id=" + lockA, nodeA, "Bearer nope", 401},
		{"query without token", "GET", "/halt?name=a.db", "", "", 401},
		{"release without token", "DELETE", "/halt?name=a.db&id=" + lockA, nodeA, "", 401},
		{"tx without token", "POST", "/tx?name=a.db&id=" + lockA, nodeA, "", 401},
		{"query right token", "GET", "/halt?name=a.db", "", "Bearer s3cret", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.auth != "" {
				hdr["Authorization"] = tt.auth
			}
			code, resp := haltCall(t, tt.method, e.ts.URL+tt.path, tt.node, bytes.NewReader(body), hdr)
			if code != tt.want {
				t.Fatalf("status %d %s, want %d", code, resp, tt.want)
			}
			if code == 401 && !strings.Contains(resp, "auth") {
				t.Fatalf("401 message does not say why: %q", resp)
			}
			if _, held := e.db.HaltHolder(); held {
				t.Fatal("a HALT was granted without the token")
			}
			before.mustEqual(t, snapshotDB(t, e.db))
		})
	}

	// With the token the whole cycle works.
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	if code, resp := haltCall(t, "POST", e.ts.URL+"/halt?name=a.db&id="+lockA, nodeA, nil, auth); code != 200 {
		t.Fatalf("acquire with the token: %d %s", code, resp)
	}
	if code, resp := haltCall(t, "POST", e.ts.URL+"/tx?name=a.db&id="+lockA, nodeA, bytes.NewReader(body), auth); code != 200 {
		t.Fatalf("tx with the token: %d %s", code, resp)
	}
	if code, resp := haltCall(t, "DELETE", e.ts.URL+"/halt?name=a.db&id="+lockA, nodeA, nil, auth); code != 200 {
		t.Fatalf("release with the token: %d %s", code, resp)
	}
}
