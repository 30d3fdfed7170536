package main

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSections(t *testing.T) {
	tests := []struct {
		list    string
		want    []string
		wantErr bool
	}{
		{"halt", []string{"halt"}, false},
		{"halt,workloads", []string{"workloads", "halt"}, false},
		{" replication , halt,halt", []string{"replication", "halt"}, false},
		{"workloads,replication,halt,proxy,failover,backup", sectionNames, false},
		{"backup,halt", []string{"halt", "backup"}, false},
		{"", nil, true},
		{"halt,", nil, true},
		{"lag", nil, true},
	}
	for _, tt := range tests {
		got, err := parseSections(tt.list)
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("parseSections(%q) = %q, %v; want %q, error %v", tt.list, got, err, tt.want, tt.wantErr)
		}
	}
	o, err := parseFlags([]string{"-only", "halt"}, &strings.Builder{})
	if err != nil || !o.runs(sectionHalt) || o.runs(sectionWorkloads) || o.runs(sectionReplication) {
		t.Errorf("-only halt: %+v, %v", o.only, err)
	}
	o, err = parseFlags(nil, &strings.Builder{})
	if err != nil || !slices.Equal(o.only, sectionNames) {
		t.Errorf("default sections: %q, %v", o.only, err)
	}
	if _, err := parseFlags([]string{"-only", "bogus"}, &strings.Builder{}); err == nil {
		t.Error("-only bogus: no error")
	}
}

// msList returns durations of the given milliseconds, sorted.
func msList(v ...float64) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x * float64(time.Millisecond))
	}
	slices.Sort(out)
	return out
}

// sampleHalt is a HALT result with known figures: forwarded p50 1.5 ms and
// 500 writes/s (PASS), the primary keeping 30% under HALTs (MISS) and its
// slowest write 150 ms against a 20 ms halter iteration (stall 130 ms: MISS).
func sampleHalt() haltResult {
	return haltResult{
		primary:   writeRun{lat: msList(0.2, 0.3, 0.4), writes: 3000, elapsed: time.Second},
		forwarded: writeRun{lat: msList(1, 1.5, 9), writes: 500, elapsed: time.Second},
		batched:   writeRun{lat: msList(10, 11, 12), writes: 900, elapsed: time.Second},
		alone:     writeRun{lat: msList(0.2, 0.3, 5), writes: 2000, elapsed: time.Second},
		contended: writeRun{lat: msList(0.3, 1, 150), writes: 600, elapsed: time.Second, busy: 1},
		halter:    halterStats{iters: msList(1, 2, 20), maxHold: 15 * time.Millisecond, writes: 3},
		base:      2, txid: 7005, committed: 7003,
	}
}

func TestHaltFigures(t *testing.T) {
	figs := sampleHalt().figures()
	want := []struct{ value, ratio, limit, verdict string }{
		{"1.50 ms", "-", "<= 2 ms", "PASS"},
		{"9.00 ms", "-", "-", "-"},
		{"500 writes/s", "0.17x", ">= 400 writes/s", "PASS"},
		{"900 writes/s", "0.30x", "-", "-"},
		{"600 writes/s", "0.30x", ">= 0.50x", "MISS"},
		{"150.00 ms", "-", "-", "-"},
		{"130.00 ms", "-", "<= 100 ms", "MISS"},
	}
	if len(figs) != len(want) {
		t.Fatalf("%d figures, want %d", len(figs), len(want))
	}
	for i, w := range want {
		f := figs[i]
		if f.value != w.value || f.ratio != w.ratio || f.limit != w.limit || f.target.verdict(f.judged) != w.verdict {
			t.Errorf("figure %d (%s) = %s, %s, %s, %s; want %+v", i, f.name, f.value, f.ratio, f.limit, f.target.verdict(f.judged), w)
		}
	}
	// A halter slower than the primary's slowest write is no stall.
	r := sampleHalt()
	r.halter.iters = msList(400)
	if f := r.figures()[6]; f.value != "0.00 ms" || f.target.verdict(f.judged) != "PASS" {
		t.Errorf("stall with a slow halter = %s, %s", f.value, f.target.verdict(f.judged))
	}
	// No HALT taken, nothing measured: the targets are missed, not passed.
	var empty haltResult
	for _, f := range empty.figures() {
		if f.target.bound == boundMin && f.target.verdict(f.judged) != "MISS" {
			t.Errorf("empty result, %s: %s", f.name, f.target.verdict(f.judged))
		}
	}
}

func TestPrintHalt(t *testing.T) {
	var buf bytes.Buffer
	if err := printHalt(&buf, sampleHalt()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"HALT write forwarding", "primary insert 0.30 ms", "alone 2000 writes/s", "halter max 20.00 ms",
		"PASS", "MISS", "primary writes that hit SQLITE_BUSY: 1", "from TXID 2 to 7005: 7003 insert", haltReferenceNote} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteJSONHalt(t *testing.T) {
	var buf bytes.Buffer
	h := sampleHalt()
	if err := writeJSON(&buf, config{duration: time.Second, rows: 10, snapshotMB: 200}, nil, nil, &h, nil); err != nil {
		t.Fatal(err)
	}
	var rep jsonReport
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, buf.String())
	}
	if rep.Replication != nil || rep.Figures != nil || !slices.Equal(rep.Sections, []string{sectionHalt}) {
		t.Errorf("sections that did not run are in the report: %s", buf.String())
	}
	j := rep.Halt
	if j == nil || len(j.Figures) != 7 || j.ForwardedP50MS != 1.5 || j.ForwardedRate != 500 || j.Halts != 3 || j.PrimaryBusyCount != 1 {
		t.Fatalf("halt = %+v", j)
	}
	if f := j.Figures[4]; f.Result != "MISS" || f.Ratio != "0.30x" {
		t.Errorf("primary under HALTs figure = %+v", f)
	}
}

func TestHaltTimeoutBoundsTheLoops(t *testing.T) {
	for _, d := range []time.Duration{time.Second, 3 * time.Second, time.Minute} {
		if got := haltTimeout(d); got < 5*d+readyTimeout+catchUpTimeout {
			t.Errorf("haltTimeout(%s) = %s: shorter than five timed loops and a replica start", d, got)
		}
	}
}
