package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestInterleave_RunsBlocksInTurnAndStopsAtTheFirstError: every path gets
// rounds*block requests, one block at a time in turn; an error stops the
// run and names the path.
func TestInterleave_RunsBlocksInTurnAndStopsAtTheFirstError(t *testing.T) {
	var order []int
	call := func(i int, failAt int) func(context.Context) error {
		n := 0
		return func(context.Context) error {
			n++
			order = append(order, i)
			if n == failAt {
				return errors.New("boom")
			}
			return nil
		}
	}
	runs, err := interleave(context.Background(), 2, 3, []func(context.Context) error{call(0, 0), call(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1}; !slices.Equal(order, want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i, r := range runs {
		if len(r.lat) != 6 || r.elapsed <= 0 || !slices.IsSorted(r.lat) {
			t.Fatalf("path %d: %d latencies (sorted %t), elapsed %s; want 6 sorted, elapsed > 0", i, len(r.lat), slices.IsSorted(r.lat), r.elapsed)
		}
	}
	order = nil
	_, err = interleave(context.Background(), 2, 3, []func(context.Context) error{call(0, 0), call(1, 2)})
	if err == nil || !strings.Contains(err.Error(), "path 1, round 0, request 1: boom") {
		t.Fatalf("error %v, want path 1, round 0, request 1: boom", err)
	}
	if len(order) != 5 {
		t.Fatalf("%d requests sent after the failure's run, want 5", len(order))
	}
}

// runOf returns a reqRun of n requests of d each.
func runOf(d time.Duration, n int) reqRun {
	r := reqRun{elapsed: d * time.Duration(n)}
	for range n {
		r.lat = append(r.lat, d)
	}
	return r
}

// TestProxyFigures_TargetsJudgeTheDifferenceToTheDirectCall: the read
// overhead and the forwarded write's extra are p50 differences to the app
// called directly, judged against 0.2 ms and 1 ms.
func TestProxyFigures_TargetsJudgeTheDifferenceToTheDirectCall(t *testing.T) {
	us := time.Microsecond
	tests := []struct {
		name                 string
		readDirect, readProx time.Duration
		writeDirect, writeFw time.Duration
		wantRead, wantWrite  string
	}{
		{"both within", 100 * us, 250 * us, 500 * us, 1400 * us, "PASS", "PASS"},
		{"at the limits", 100 * us, 300 * us, 500 * us, 1500 * us, "PASS", "PASS"},
		{"both over", 100 * us, 310 * us, 500 * us, 1600 * us, "MISS", "MISS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := proxyResult{
				readDirect: runOf(tt.readDirect, 10), readProxied: runOf(tt.readProx, 10),
				writeDirect: runOf(tt.writeDirect, 10), writeLocal: runOf(tt.writeDirect, 10),
				writeForwarded: runOf(tt.writeFw, 10),
			}
			got := map[string]string{}
			for _, f := range r.figures() {
				got[f.name] = f.target.verdict(f.judged)
			}
			if got["local read overhead p50"] != tt.wantRead || got["forwarded write extra p50"] != tt.wantWrite {
				t.Fatalf("read overhead %s, forwarded extra %s; want %s, %s",
					got["local read overhead p50"], got["forwarded write extra p50"], tt.wantRead, tt.wantWrite)
			}
		})
	}
	r := proxyResult{readDirect: runOf(100*us, 10), readProxied: runOf(200*us, 10)}
	if rate := r.readProxied.rate(); rate < 4999 || rate > 5001 {
		t.Fatalf("proxied rate %.1f req/s, want 5000", rate)
	}
}
