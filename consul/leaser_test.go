package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/litefs/litefs"
	"github.com/litefs/litefs/internal/consultest"
	"github.com/superfly/ltx"
)

func TestLeaser_OnlyOneCandidateHoldsTheLease(t *testing.T) {
	for _, tc := range []struct {
		name       string
		candidates int
	}{
		{"two candidates", 2},
		{"five candidates", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := consultest.Start(t)
			ctx := testContext(t, 30*time.Second)
			leases := make([]litefs.Lease, tc.candidates)
			errs := make([]error, tc.candidates)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range tc.candidates {
				l := newLeaser(t, a.URL, Config{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					leases[i], errs[i] = l.Acquire(ctx, testInfo(fmt.Sprintf("node%d", i), nil))
				}()
			}
			close(start)
			wg.Wait()

			winner := -1
			for i, err := range errs {
				switch {
				case err == nil:
					releaseAtEnd(t, leases[i])
					if winner >= 0 {
						t.Fatalf("node%d and node%d both hold the lease", winner, i)
					}
					winner = i
				case !errors.Is(err, litefs.ErrLeaseHeld):
					t.Fatalf("node%d: want ErrLeaseHeld, got %v", i, err)
				}
			}
			if winner < 0 {
				t.Fatalf("no candidate won: %v", errs)
			}
			st, err := newLeaser(t, a.URL, Config{}).State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("node%d", winner); !st.Held || st.Info.Hostname != want {
				t.Fatalf("state: held=%v holder=%q, want %s", st.Held, st.Info.Hostname, want)
			}

			// A later attempt is refused at once, naming the holder.
			begin := time.Now()
			_, err = newLeaser(t, a.URL, Config{}).Acquire(ctx, testInfo("late", nil))
			if !errors.Is(err, litefs.ErrLeaseHeld) || !strings.Contains(err.Error(), st.Info.Hostname) {
				t.Fatalf("late candidate: want ErrLeaseHeld naming %s, got %v", st.Info.Hostname, err)
			}
			if d := time.Since(begin); d > time.Second {
				t.Fatalf("refusal took %s", d)
			}
		})
	}
}

func TestLeaser_CleanReleaseLetsAnotherCandidateAcquireWithinASecond(t *testing.T) {
	a := consultest.Start(t)
	ctx := testContext(t, 30*time.Second)
	la, lb := newLeaser(t, a.URL, Config{}), newLeaser(t, a.URL, Config{})
	held, err := la.Acquire(ctx, testInfo("a", nil))
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		lease litefs.Lease
		at    time.Time
		err   error
	}
	got := make(chan result, 1)
	go func() {
		lease, _, err := acquireWhenFree(ctx, lb, testInfo("b", nil))
		got <- result{lease, time.Now(), err}
	}()
	time.Sleep(200 * time.Millisecond) // b is now blocked in Watch

	releasedAt := time.Now()
	if err := held.Release(ctx, held.Info()); err != nil {
		t.Fatalf("release: %v", err)
	}
	if !errors.Is(held.Err(), litefs.ErrLeaseReleased) {
		t.Fatalf("Err after release: %v", held.Err())
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("b: %v", r.err)
	}
	releaseAtEnd(t, r.lease)
	took := r.at.Sub(releasedAt)
	t.Logf("clean release -> other candidate holds the lease: %s", took.Round(time.Millisecond))
	if took > time.Second {
		t.Fatalf("b acquired %s after the release, want <= 1s (lock-delay must not apply)", took)
	}
}

func TestLeaser_HolderThatStopsRenewingIsReplacedAfterItsDeadlineWithinFiveSeconds(t *testing.T) {
	a := consultest.Start(t)
	ctx := testContext(t, 30*time.Second)
	la, lb := newLeaser(t, a.URL, Config{}), newLeaser(t, a.URL, Config{})
	held, err := la.Acquire(ctx, testInfo("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a few renewals

	// Freeze the holder: no more renewals, no release, no loss detection
	// (a paused or wedged process).
	frozen := held.(*Lease)
	frozen.cancel()
	frozen.wg.Wait()
	stoppedAt, deadline := time.Now(), frozen.Deadline()

	lease, freeAt, err := acquireWhenFree(ctx, lb, testInfo("b", nil))
	if err != nil {
		t.Fatalf("b: %v", err)
	}
	acquiredAt := time.Now()
	releaseAtEnd(t, lease)
	t.Logf("holder stopped renewing -> session invalidated %s, other candidate holds the lease %s; holder's deadline was %s after it stopped",
		freeAt.Sub(stoppedAt).Round(time.Millisecond), acquiredAt.Sub(stoppedAt).Round(time.Millisecond), deadline.Sub(stoppedAt).Round(time.Millisecond))
	if !acquiredAt.After(deadline) {
		t.Fatalf("b acquired %s before the old holder's deadline", deadline.Sub(acquiredAt))
	}
	if d := acquiredAt.Sub(stoppedAt); d > 5*time.Second {
		t.Fatalf("b acquired %s after the holder stopped renewing, want <= 5s", d)
	}
}

func TestLeaser_KilledHolderProcessIsReplacedWithinFiveSeconds(t *testing.T) {
	a := consultest.Start(t)
	ctx := testContext(t, 40*time.Second)
	holder := startHolderProcess(t, a, a.URL)
	time.Sleep(time.Second) // a few renewals

	lb := newLeaser(t, a.URL, Config{})
	if err := holder.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill holder: %v", err)
	}
	killedAt := time.Now()
	_ = holder.Wait()

	lease, freeAt, err := acquireWhenFree(ctx, lb, testInfo("b", nil))
	if err != nil {
		t.Fatalf("b: %v", err)
	}
	acquiredAt := time.Now()
	releaseAtEnd(t, lease)
	t.Logf("SIGKILL of the holder -> lock free %s, other candidate holds the lease %s",
		freeAt.Sub(killedAt).Round(time.Millisecond), acquiredAt.Sub(killedAt).Round(time.Millisecond))
	if d := acquiredAt.Sub(killedAt); d > 5*time.Second {
		t.Fatalf("b acquired %s after the kill, want <= 5s", d)
	}
}

func TestLeaser_HolderLearnsLossWhenConsulStops(t *testing.T) {
	a := consultest.Start(t)
	ctx := testContext(t, 30*time.Second)
	l := newLeaser(t, a.URL, Config{})
	held, err := l.Acquire(ctx, testInfo("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)

	a.Stop(t)
	killedAt := time.Now()
	doneAt := waitDone(t, held, 5*time.Second)
	took := doneAt.Sub(killedAt)
	t.Logf("agent killed -> holder's Done: %s (check TTL %s)", took.Round(time.Millisecond), DefaultCheckTTL)
	if took >= DefaultCheckTTL {
		t.Fatalf("holder learned of the loss %s after Consul stopped, want < check TTL %s", took, DefaultCheckTTL)
	}
	if late := doneAt.Sub(held.Deadline()); late > 250*time.Millisecond {
		t.Fatalf("Done closed %s after the deadline", late)
	}
	if !errors.Is(held.Err(), litefs.ErrLeaseLost) {
		t.Fatalf("Err: want ErrLeaseLost, got %v", held.Err())
	}
	if err := held.Release(ctx, held.Info()); !errors.Is(err, litefs.ErrLeaseLost) {
		t.Fatalf("Release of a lost lease: want ErrLeaseLost, got %v", err)
	}
}

func TestLeaser_HolderLearnsAtOnceWhenItsSessionIsInvalidated(t *testing.T) {
	for _, tc := range []struct {
		name       string
		invalidate func(c *api.Client, lease *Lease) error
	}{
		{"session destroyed", func(c *api.Client, lease *Lease) error {
			_, err := c.Session().Destroy(lease.SessionID(), nil)
			return err
		}},
		{"key deleted", func(c *api.Client, lease *Lease) error {
			_, err := c.KV().Delete(testKey, nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := consultest.Start(t)
			ctx := testContext(t, 30*time.Second)
			held, err := newLeaser(t, a.URL, Config{}).Acquire(ctx, testInfo("a", nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.invalidate(a.Client(t), held.(*Lease)); err != nil {
				t.Fatal(err)
			}
			brokeAt := time.Now()
			took := waitDone(t, held, 5*time.Second).Sub(brokeAt)
			t.Logf("%s -> holder's Done: %s", tc.name, took.Round(time.Millisecond))
			if took > 500*time.Millisecond {
				t.Fatalf("holder learned %s late: %s", tc.name, took)
			}
			if !errors.Is(held.Err(), litefs.ErrLeaseLost) {
				t.Fatalf("Err: want ErrLeaseLost, got %v", held.Err())
			}
		})
	}
}

func TestLeaser_ReplicaSeesPrimaryChangeByBlockingQuery(t *testing.T) {
	a := consultest.Start(t)
	ctx := testContext(t, 30*time.Second)
	states, next := startWatcher(t, ctx, newLeaser(t, a.URL, Config{}))
	if st := next("the initial state", time.Now()); st.Held {
		t.Fatalf("initial state held: %+v", st)
	}

	la, lb := newLeaser(t, a.URL, Config{}), newLeaser(t, a.URL, Config{})
	at := time.Now()
	held, err := la.Acquire(ctx, testInfo("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	if st := next("a acquiring", at); st.Primary() == nil || st.Primary().Hostname != "a" || st.Primary().AdvertiseURL != "http://a:20202" {
		t.Fatalf("after a acquired: %+v", st)
	}

	// Nothing changes: Watch blocks (no polling, no spurious returns).
	select {
	case st := <-states:
		t.Fatalf("Watch returned without a change: %+v", st)
	case <-time.After(500 * time.Millisecond):
	}

	pos := map[string]ltx.Pos{"db": {TXID: 9, PostApplyChecksum: 0x99}}
	at = time.Now()
	if err := held.Update(ctx, testInfo("a", pos)); err != nil {
		t.Fatal(err)
	}
	if st := next("new positions", at); st.Info.Positions["db"] != pos["db"] {
		t.Fatalf("after update: %+v", st)
	}

	final := map[string]ltx.Pos{"db": {TXID: 10, PostApplyChecksum: 0x1010}}
	at = time.Now()
	if err := held.Release(ctx, testInfo("a", final)); err != nil {
		t.Fatal(err)
	}
	if st := next("the release", at); st.Held || st.Primary() != nil || st.Info.Positions["db"] != final["db"] {
		t.Fatalf("after release: held=%v info=%+v (want the final positions)", st.Held, st.Info)
	}

	at = time.Now()
	heldB, err := lb.Acquire(ctx, testInfo("b", final))
	if err != nil {
		t.Fatal(err)
	}
	releaseAtEnd(t, heldB)
	if st := next("b acquiring", at); st.Primary() == nil || st.Primary().Hostname != "b" {
		t.Fatalf("after b acquired: %+v", st)
	}
}

func TestLeaser_ClusterIDMismatchIsRefused(t *testing.T) {
	a := consultest.Start(t)
	ctx := testContext(t, 30*time.Second)
	first, other := newLeaser(t, a.URL, Config{}), newLeaser(t, a.URL, Config{})

	if id, err := first.ClusterID(ctx); err != nil || id != "" {
		t.Fatalf("ClusterID before any was set: %q, %v", id, err)
	}
	if err := first.SetClusterID(ctx, "LFSC-FIRST"); err != nil {
		t.Fatalf("first SetClusterID: %v", err)
	}
	for _, tc := range []struct {
		name    string
		call    func() error
		refused bool
	}{
		{"same id again", func() error { return other.SetClusterID(ctx, "LFSC-FIRST") }, false},
		{"another id", func() error { return other.SetClusterID(ctx, "LFSC-OTHER") }, true},
		{"acquire with another id", func() error {
			info := testInfo("o", nil)
			info.ClusterID = "LFSC-OTHER"
			_, err := other.Acquire(ctx, info)
			return err
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			switch {
			case !tc.refused && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.refused && !errors.Is(err, litefs.ErrClusterMismatch):
				t.Fatalf("want ErrClusterMismatch, got %v", err)
			case tc.refused && !(strings.Contains(err.Error(), "LFSC-FIRST") && strings.Contains(err.Error(), "LFSC-OTHER")):
				t.Fatalf("error does not name both ids: %v", err)
			}
		})
	}
	if id, err := other.ClusterID(ctx); err != nil || id != "LFSC-FIRST" {
		t.Fatalf("ClusterID: %q, %v; want LFSC-FIRST", id, err)
	}
	pair, _, err := a.Client(t).KV().Get(testKey+ClusterIDSuffix, nil)
	if err != nil || pair == nil || string(pair.Value) != "LFSC-FIRST" {
		t.Fatalf("key %s: %+v, %v", testKey+ClusterIDSuffix, pair, err)
	}
}

func TestLeaser_ValueCarriesPositions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		positions map[string]ltx.Pos
		want      map[string]string // JSON positions
	}{
		{"no databases", nil, nil},
		{"two databases", map[string]ltx.Pos{
			"app.db":  {TXID: 3, PostApplyChecksum: 0x8f1c0a2b3d4e5f60},
			"logs.db": {TXID: 0x1234, PostApplyChecksum: 0x1},
		}, map[string]string{
			"app.db":  "0000000000000003/8f1c0a2b3d4e5f60",
			"logs.db": "0000000000001234/0000000000000001",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := consultest.Start(t)
			ctx := testContext(t, 30*time.Second)
			l := newLeaser(t, a.URL+"/team/litefs", Config{}) // key prefix from the URL's path
			held, err := l.Acquire(ctx, testInfo("a", tc.positions))
			if err != nil {
				t.Fatal(err)
			}
			releaseAtEnd(t, held)

			pair, _, err := a.Client(t).KV().Get("team/litefs/"+testKey, nil)
			if err != nil || pair == nil {
				t.Fatalf("read key: %+v, %v", pair, err)
			}
			var raw value
			if err := json.Unmarshal(pair.Value, &raw); err != nil {
				t.Fatalf("value is not JSON: %q: %v", pair.Value, err)
			}
			if raw.Hostname != "a" || raw.AdvertiseURL != "http://a:20202" || raw.ClusterID != testClusterID || fmt.Sprint(raw.Positions) != fmt.Sprint(tc.want) {
				t.Fatalf("value %s, want hostname a, its URL, cluster id and positions %v", pair.Value, tc.want)
			}
			st, err := l.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Held || !st.Info.Equal(testInfo("a", tc.positions)) {
				t.Fatalf("State: %+v", st)
			}
		})
	}
}

func TestLeaser_CandidateBehindTheLastPrimaryIsRefused(t *testing.T) {
	last := map[string]ltx.Pos{"db": {TXID: 7, PostApplyChecksum: 0x77}}
	for _, tc := range []struct {
		name    string
		mine    map[string]ltx.Pos
		refused bool
	}{
		{"older TXID", map[string]ltx.Pos{"db": {TXID: 6, PostApplyChecksum: 0x66}}, true},
		{"missing database", map[string]ltx.Pos{"other": {TXID: 9, PostApplyChecksum: 0x9}}, true},
		{"diverged", map[string]ltx.Pos{"db": {TXID: 7, PostApplyChecksum: 0x70}}, true},
		{"same position", map[string]ltx.Pos{"db": {TXID: 7, PostApplyChecksum: 0x77}}, false},
		{"ahead", map[string]ltx.Pos{"db": {TXID: 8, PostApplyChecksum: 0x88}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := consultest.Start(t)
			ctx := testContext(t, 30*time.Second)
			held, err := newLeaser(t, a.URL, Config{}).Acquire(ctx, testInfo("a", nil))
			if err != nil {
				t.Fatal(err)
			}
			if err := held.Release(ctx, testInfo("a", last)); err != nil {
				t.Fatal(err)
			}
			lease, err := newLeaser(t, a.URL, Config{}).Acquire(ctx, testInfo("b", tc.mine))
			if !tc.refused {
				if err != nil {
					t.Fatalf("want success, got %v", err)
				}
				releaseAtEnd(t, lease)
				return
			}
			if !errors.Is(err, litefs.ErrStaleCandidate) || !strings.Contains(err.Error(), last["db"].String()) {
				t.Fatalf("want ErrStaleCandidate naming %s, got %v", last["db"], err)
			}
		})
	}
}

func TestLeaser_AcquireRefusesIncompleteInfo(t *testing.T) {
	l, err := New(Config{URL: "http://127.0.0.1:1", Key: testKey, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t, 5*time.Second)
	for _, tc := range []struct {
		name string
		edit func(*litefs.LeaseInfo)
		want string
	}{
		{"no cluster id", func(i *litefs.LeaseInfo) { i.ClusterID = "" }, "no cluster id"},
		{"no advertise URL", func(i *litefs.LeaseInfo) { i.AdvertiseURL = "" }, "no advertise URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := testInfo("a", nil)
			tc.edit(&info)
			if _, err := l.Acquire(ctx, info); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}
