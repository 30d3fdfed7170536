package tests

import (
	"fmt"
	"os"
	"testing"
	"time"

	litefsgo "github.com/superfly/litefs-go"
)

// TestHalt_PrimaryReadersAreNotBlockedAfterForwardedCommits: in WAL mode,
// a reader on the primary completes in under 50 ms and sees every
// forwarded row while the replica still holds the HALT after forwarding
// (the forwarded apply invalidates the primary's WAL index, which the
// reader rebuilds).
func TestHalt_PrimaryReadersAreNotBlockedAfterForwardedCommits(t *testing.T) {
	RequireFUSE(t)
	p, r, pdb := haltClusterMode(t, journalModes[3])
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('x')")
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "f.db")
	rdb := openModeDB(t, r, "f.db", journalModes[3])
	f, err := os.OpenFile(r.DBPath("f.db")+"-lock", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := litefsgo.Halt(f); err != nil {
		t.Fatalf("Halt: %v", err)
	}
	for i := 1; i <= 3; i++ {
		mustExec(t, rdb, "INSERT INTO t(v) VALUES (?)", fmt.Sprint(i))
		for j := 0; j < 3; j++ {
			db := openSingleConn(t, p.DBPath("f.db"), "")
			start := time.Now()
			got := queryString(t, db, "SELECT count(*) FROM t")
			took := time.Since(start)
			closeDB(t, db)
			if want := fmt.Sprint(1 + i); got != want || took > 50*time.Millisecond {
				t.Errorf("after forwarded commit %d, reader %d on the primary: %s rows in %s, want %s rows in under 50ms",
					i, j+1, got, took, want)
			}
		}
	}
	// A local writer on the primary is still kept out by the HALT.
	requirePrimaryBlocked(t, pdb)
	if err := litefsgo.Unhalt(f); err != nil {
		t.Fatalf("Unhalt: %v", err)
	}
	mustExec(t, pdb, "INSERT INTO t(v) VALUES ('after')")
	waitConverged(t, ConvergeTimeout, p, []*Node{r}, "f.db")
	if got := queryString(t, pdb, "SELECT count(*) FROM t"); got != "5" {
		t.Errorf("primary has %s rows after the HALT, want 5", got)
	}
}
