package tests

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/faultproxy"
	litefsgo "github.com/superfly/litefs-go"
)

// Network faults around the HALT lock (SPEC 8.3, issue 14 item 7b): a
// replica that holds the HALT and is committing is cut off by a partition.

// TestNetFault_PartitionedHaltHolderLosesItsCommitsAndFreesThePrimary: a
// replica holds the HALT and commits in a loop when its network fails,
// silently (a blackhole: connections stall), loudly (every connection cut
// and refused), or one way (requests arrive, answers do not). Its in-flight commit and the next one fail, the
// primary is writable again within halt.ttl, and after the network heals
// the three nodes hold every acknowledged row at the same position and
// checksum.
func TestNetFault_PartitionedHaltHolderLosesItsCommitsAndFreesThePrimary(t *testing.T) {
	RequireFUSE(t)
	for _, tc := range []struct {
		name  string
		fault func(*faultproxy.Proxy)
	}{
		{"blackhole", (*faultproxy.Proxy).Blackhole},
		{"cut", (*faultproxy.Proxy).Cut},
		{"one-way", (*faultproxy.Proxy).BlackholeAnswers},
	} {
		t.Run(tc.name, func(t *testing.T) { partitionHaltHolder(t, tc.fault) })
	}
}

// partitionHaltHolder is that test for one kind of fault.
func partitionHaltHolder(t *testing.T, fault func(*faultproxy.Proxy)) {
	p, rs, pxs, pdb := startProxiedCluster(t, 2)
	r := rs[0]
	rdb := OpenDB(t, r.DBPath("f.db"), "")
	f, err := os.OpenFile(r.DBPath("f.db")+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := litefsgo.Halt(f); err != nil {
		t.Fatalf("Halt: %v", err)
	}

	var log commitLog
	var committed atomic.Int64
	writerDone := make(chan struct{})
	go func() { // commits until the first failure
		defer close(writerDone)
		for i := 0; ; i++ {
			if err := log.insert(rdb, fmt.Sprintf("r1-%d", i)); err != nil {
				return
			}
			committed.Add(1)
		}
	}()
	waitFor(t, 30*time.Second, "10 forwarded commits", func() bool { return committed.Load() >= 10 })

	start := time.Now()
	fault(pxs[0])
	took := primaryWritableAfter(t, pdb, start, netHaltTTL+time.Second)
	select {
	case <-writerDone:
	case <-time.After(netHaltTTL + 3*time.Second):
		pxs[0].Heal()
		t.Fatalf("the holder's in-flight commit has not returned %s after the fault", time.Since(start))
	}
	t.Logf("primary writable %s, holder's in-flight commit failed %s after the fault (halt.ttl %s): %v",
		took, time.Since(start), netHaltTTL, log.errs)

	// The next commit under the cut-off HALT fails too and leaves nothing.
	if err := log.insert(rdb, "r1-next"); err == nil {
		t.Error("a commit under a HALT cut off by a partition succeeded")
	}
	pxs[0].Heal()
	if err := litefsgo.Unhalt(f); err != nil {
		t.Errorf("Unhalt of the expired HALT: %v, want a no-op", err)
	}
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('primary after heal')")
	requireHealedHolder(t, p, rs, &log, "primary", "primary after heal")
}

// requireHealedHolder checks the end of a partition of the HALT's holder:
// converged positions and files, every acknowledged row (the holder's and
// the primary's extra ones) on every node, and of the holder's failed
// commits at most the first (in flight when the fault struck) applied.
func requireHealedHolder(t *testing.T, p *Node, rs []*Node, log *commitLog, extra ...string) {
	t.Helper()
	all := append([]*Node{p}, rs...)
	at := requireConvergedFiles(t, p, rs, "f.db")
	acked, failed := log.snapshot()
	present := requireSameRowsEverywhere(t, all, "f.db", append(acked, extra...), failed)
	for _, v := range present {
		if v != failed[0] {
			t.Errorf("the failed commit %q is on every node; only the in-flight one (%q) may be", v, failed[0])
		}
	}
	t.Logf("converged at %s; failed commits present everywhere (outcome unknown to the holder): %v", at, present)
	requireNoPanic(t, all...)
}

// waitFor polls cond every 10 ms and fails the test after limit.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNetFault_LostHaltGrantFreesThePrimary: the primary grants a HALT but
// the answer never reaches the replica. The replica's lock attempt fails,
// the grant it never saw does not keep the primary from writing beyond
// halt.ttl, and the next attempt gets the lock and commits.
func TestNetFault_LostHaltGrantFreesThePrimary(t *testing.T) {
	RequireFUSE(t)
	p, rs, pxs, pdb := startProxiedCluster(t, 1)
	r := rs[0]
	// The acquire's query ends at name (a renewal adds &renew=true).
	pxs[0].LoseAnswers([]byte("&name=f.db HTTP/1.1"), 1)
	f, err := os.OpenFile(r.DBPath("f.db")+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if err := litefsgo.Halt(f); err == nil {
		t.Fatal("Halt succeeded although the primary's answer was lost")
	} else {
		t.Logf("Halt with the grant lost: %v after %s", err, time.Since(start).Round(time.Millisecond))
	}
	if got := pxs[0].Stats().LostAnswers; got != 1 {
		t.Fatalf("the proxy lost %d answers, want the grant's", got)
	}
	took := primaryWritableAfter(t, pdb, start, netHaltTTL+time.Second)
	t.Logf("primary writable %s after the lost grant (halt.ttl %s)", took, netHaltTTL)

	rdb := OpenDB(t, r.DBPath("f.db"), "")
	var log commitLog
	h := &halter{f: f}
	if err := h.insert(rdb, &log, "after the lost grant"); err != nil {
		t.Fatal(err)
	}
	if acked, _ := log.snapshot(); len(acked) != 1 {
		t.Fatalf("the commit under the next HALT failed: %v", log.errs)
	}
	if err := litefsgo.Unhalt(f); err != nil {
		t.Fatal(err)
	}
	// Last a primary commit: applying it folds the replica's own WAL commit
	// into its database file, which requireConvergedFiles checksums.
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('primary after')")
	requireConvergedFiles(t, p, rs, "f.db")
	acked, _ := log.snapshot()
	requireSameRowsEverywhere(t, []*Node{p, r}, "f.db", append(acked, "primary", "primary after"), nil)
	requireNoPanic(t, p, r)
}
