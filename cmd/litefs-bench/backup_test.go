package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// Each commit is paired with the first time the bucket held its TXID;
// commits the bucket never showed are left out.
func TestBackupLags(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	commits := []time.Time{at(0), at(10), at(20), at(30)} // TXIDs 11-14
	samples := []bucketSample{{at(-5), 10}, {at(15), 11}, {at(500), 13}}
	got := backupLags(10, commits, samples)
	want := []time.Duration{15 * time.Millisecond, 490 * time.Millisecond, 480 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("backupLags = %v, want %v", got, want)
	}
}

// Lag and PUT figures are judged on their value, restore and commit rate
// on value/baseline.
func TestBackupFigures(t *testing.T) {
	lags := func(d time.Duration) []time.Duration { return []time.Duration{d, d, d} }
	r := backupResult{
		steady:   backupLag{name: "100 tx/s", duration: 20 * time.Second, commits: 2000, lags: lags(time.Second)},
		full:     backupLag{name: "full rate", duration: 10 * time.Second, commits: 30000, lags: lags(3 * time.Second)},
		puts:     20,
		offRate:  3100,
		restore:  snapStats{bytes: 1 << 30, catchUp: 4 * time.Second, copyTime: time.Second},
		backupMB: 1024,
	}
	var got []string
	for _, f := range r.figures() {
		got = append(got, f.name+" "+f.format(f.value)+" "+f.targetString()+" "+f.verdict())
	}
	want := []string{
		"backup lag p50, 100 tx/s for 20s (100 tx/s, 2000 tx) 1000 ms - -",
		"backup lag p99, 100 tx/s for 20s (100 tx/s, 2000 tx) 1000 ms <= 2000 ms PASS",
		"backup lag p50, full rate for 10s (3000 tx/s, 30000 tx) 3000 ms - -",
		"backup lag p99, full rate for 10s (3000 tx/s, 30000 tx) 3000 ms <= 2000 ms MISS",
		"PUTs per minute at 100 tx/s 60 /min - -",
		"restore, 1024 MB database 256 MB/s >= 0.50x MISS",
		"commit rate with backup, full rate, 4 rounds 3000 tx/s >= 0.95x PASS",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("figures:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
