package tests

import (
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/faultproxy"
)

// Network faults during catch-up (issue 14 item 7b): a replica catches up
// through 50 ms of latency while its connection is cut mid-stream again
// and again, first during a snapshot, then during a run of LTX files.

// TestNetFault_CatchUpThroughLatencyAndCutsConverges starts a replica of a
// primary holding about 6 MB behind a proxy that adds 50 ms each way and
// cuts every connection after 1 MiB (so the snapshot is cut four
// times), heals, then cuts the caught-up replica off while the primary
// commits 300 transactions of 1.5 kB of incompressible text and lets it
// catch up on their LTX files (no snapshot) with cuts every 64 KiB. The primary keeps committing throughout. Afterwards
// the three nodes have the same position, each replica's file has the
// checksum its position claims, and every acknowledged row is everywhere.
func TestNetFault_CatchUpThroughLatencyAndCutsConverges(t *testing.T) {
	RequireFUSE(t)
	p, rs, _, pdb := startProxiedCluster(t, 1)
	mustExec(t, pdb, "CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB)")
	mustExec(t, pdb, "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 1500) INSERT INTO big(b) SELECT randomblob(4000) FROM c")

	px := startProxy(t, p.Addr)
	px.SetLatency(50 * time.Millisecond)
	px.CutAfterBytes(1 << 20)
	var log commitLog
	stop := startPrimaryWriter(t, pdb, &log, "snap")
	r := startReplicaVia(t, p, px, p.Name+"-late", "  reconnect-delay: 100ms\n")
	waitCuts(t, px, 4, "cuts of the snapshot")
	px.CutAfterBytes(-1)
	stop()
	all := append([]*Node{r}, rs...)
	requireConvergedFiles(t, p, all, "f.db")
	t.Logf("after the snapshot phase: %+v", px.Stats())

	px.Cut()
	for i := 0; i < 300; i++ {
		if err := log.insert(pdb, fmt.Sprintf("ltx-%d-%s", i, randomHex(uint64(i), 1500))); err != nil {
			t.Fatal(err)
		}
	}
	snapshots := strings.Count(p.Log(), "snapshot sent")
	before := px.Stats().Cuts
	px.CutAfterBytes(64 << 10)
	stop = startPrimaryWriter(t, pdb, &log, "ltx-live")
	px.Heal()
	waitCuts(t, px, before+5, "cuts of the LTX catch-up")
	px.CutAfterBytes(-1)
	stop()
	at := requireConvergedFiles(t, p, all, "f.db")
	if n := strings.Count(p.Log(), "snapshot sent") - snapshots; n != 0 {
		t.Errorf("the primary sent %d snapshots during the LTX catch-up, want none (its history covers the gap)", n)
	}
	acked, failed := log.snapshot()
	if len(failed) > 0 {
		t.Errorf("commits on the primary failed: %v", log.errs)
	}
	requireSameRowsEverywhere(t, append([]*Node{p}, all...), "f.db", acked, nil)
	t.Logf("converged at %s with %d rows committed during the faults; proxy %+v", at, len(acked), px.Stats())
	requireNoPanic(t, p, r)
}

// randomHex returns n hexadecimal digits of a xorshift sequence from seed:
// text that LTX compression cannot shrink much.
func randomHex(seed uint64, n int) string {
	var b strings.Builder
	x := seed*0x9e3779b97f4a7c15 + 1
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		fmt.Fprintf(&b, "%016x", x)
	}
	return b.String()[:n]
}

// startPrimaryWriter commits a row with value prefix-N every 20 ms on db
// until the returned function is called (which waits for it).
func startPrimaryWriter(t *testing.T, pdb *sql.DB, log *commitLog, prefix string) func() {
	t.Helper()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			_ = log.insert(pdb, fmt.Sprintf("%s-%d", prefix, i))
		}
	}()
	var stopped bool
	stop := func() {
		if !stopped {
			stopped = true
			close(quit)
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitCuts waits until the proxy has cut n connections.
func waitCuts(t *testing.T, px *faultproxy.Proxy, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for px.Stats().Cuts < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %d %s within 45s: proxy %+v", n, what, px.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
