package tests

import (
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/litefs/litefs/internal/faultproxy"
	litefsgo "github.com/superfly/litefs-go"
)

// Network faults during forwarded commits (issue 14 item 7b, SPEC 8.2 step
// 5 and ARCHITECTURE "Known gaps" (3)): the connection carrying POST /tx is
// cut after the request went out and before the answer came back, so the
// primary applied a transaction whose COMMIT failed on the replica.

// forwardCommits is how many commits the holder attempts.
const forwardCommits = 40

// TestNetFault_LostForwardAnswersNeitherDivergeNorApplyTwice: a replica
// holding the HALT commits 4 rows through 300 ms of latency each way, then
// 40 rows through 10 ms of latency while the proxy loses the answer to
// three POST /tx requests, resets the replica's connections twice and cuts
// one large forward after 4 KiB of its request (applied nowhere, then).
// Every COMMIT that returned success is on every node exactly once, no row
// is there twice, the failed commits are there on all nodes or on none,
// each row is one TXID, and the three nodes end at the same position and
// checksum.
func TestNetFault_LostForwardAnswersNeitherDivergeNorApplyTwice(t *testing.T) {
	RequireFUSE(t)
	p, rs, pxs, pdb := startProxiedCluster(t, 2)
	r, px := rs[0], pxs[0]
	start := readPos(t, p, "f.db")

	rdb := OpenDB(t, r.DBPath("f.db"), "")
	f, err := os.OpenFile(r.DBPath("f.db")+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var log commitLog
	h := &halter{f: f}
	slowHaltCommits(t, px, h, rdb, &log)
	px.SetLatency(10 * time.Millisecond)
	for i := 0; i < forwardCommits; i++ {
		v := fmt.Sprintf("fwd-%d", i)
		switch i {
		case 5, 20, 35:
			px.LoseAnswers([]byte("POST /tx?"), 1)
		case 12, 28:
			px.DropConnections()
		case truncatedAt:
			px.TruncateRequests([]byte("POST /tx?"), 4096, 1)
			v = truncatedRow()
		}
		if err := h.insert(rdb, &log, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := litefsgo.Unhalt(f); err != nil {
		t.Errorf("final Unhalt: %v", err)
	}
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('primary after')")

	all := []*Node{p, rs[0], rs[1]}
	end := requireConvergedFiles(t, p, rs, "f.db")
	acked, failed := log.snapshot()
	present := requireSameRowsEverywhere(t, all, "f.db", append(acked, "primary after"), failed)
	stats := px.Stats()
	t.Logf("%d commits acknowledged, %d failed (%d of them applied: outcome unknown to the holder); proxy %+v; errors: %v",
		len(acked), len(failed), len(present), stats, log.errs)
	if stats.LostAnswers != 3 {
		t.Errorf("the proxy lost %d answers to POST /tx, want 3 (the fault was not injected)", stats.LostAnswers)
	}
	if len(failed) < 4 {
		t.Errorf("%d commits failed, want at least the 3 whose answers were lost and the truncated one", len(failed))
	}
	if stats.Truncated != 1 {
		t.Errorf("the proxy truncated %d POST /tx requests, want 1", stats.Truncated)
	}
	for _, v := range present {
		if v == truncatedRow() {
			t.Errorf("a transaction whose POST /tx was cut part way was applied")
		}
	}
	rows := int(queryInt(t, pdb, "SELECT count(*) FROM t"))
	if got := int(end.txid - start.txid); got != rows {
		t.Errorf("%d transactions since the start (TXID %d to %d) for %d rows: a transaction applied twice or lost",
			got, start.txid, end.txid, rows)
	}
	if want := len(acked) + len(present) + 1; rows != want {
		t.Errorf("%d rows, want %d (acknowledged, failed but applied, the primary's)", rows, want)
	}
	requireNoPanic(t, all...)
}

// slowHaltCommits commits 4 rows under one HALT through 300 ms of latency
// each way, which takes longer than halt.ttl: renewals answered late but
// within halt.ttl keep the lock, and none of the commits fails.
func slowHaltCommits(t *testing.T, px *faultproxy.Proxy, h *halter, db *sql.DB, log *commitLog) {
	t.Helper()
	px.SetLatency(300 * time.Millisecond)
	start := time.Now()
	for i := 0; i < 4; i++ {
		if err := h.insert(db, log, fmt.Sprintf("slow-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	if _, failed := log.snapshot(); len(failed) > 0 {
		t.Fatalf("commits under one HALT through 300 ms of latency failed: %v", log.errs)
	}
	if took < netHaltTTL {
		t.Fatalf("4 commits through 300 ms of latency took %s, less than halt.ttl: the latency was not applied", took)
	}
	t.Logf("4 commits under one HALT through 300 ms of latency each way: %s", took.Round(time.Millisecond))
}

// truncatedAt is the commit whose POST /tx is cut after 4 KiB.
const truncatedAt = 25

// truncatedRow is that commit's value: 20,000 hexadecimal digits that do
// not compress, so its forwarded LTX file is much larger than 4 KiB.
func truncatedRow() string { return "truncated-" + randomHex(25, 20000) }

// halter takes and releases the HALT through one descriptor.
type halter struct {
	f    *os.File
	held bool
}

// insert commits one row under the HALT: it takes the HALT if it is not
// held (retrying a busy or unreachable primary for up to 20 s), and after
// a failed commit releases it, so the next commit starts from a fresh lock
// at the primary's position.
func (h *halter) insert(db *sql.DB, log *commitLog, v string) error {
	deadline := time.Now().Add(20 * time.Second)
	for !h.held {
		err := litefsgo.Halt(h.f)
		if err == nil {
			h.held = true
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("take the HALT for %s: %w", v, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := log.insert(db, v); err != nil {
		h.held = false
		if uerr := litefsgo.Unhalt(h.f); uerr != nil {
			return fmt.Errorf("release the HALT after the failed commit of %s: %w", v, uerr)
		}
	}
	return nil
}
