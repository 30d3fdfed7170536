package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := time.Millisecond
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * ms // 1..100 ms
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value p50", []time.Duration{7 * ms}, 50, 7 * ms},
		{"one value p99", []time.Duration{7 * ms}, 99, 7 * ms},
		{"two values p50 is the lower", []time.Duration{1 * ms, 9 * ms}, 50, 1 * ms},
		{"two values p99 is the upper", []time.Duration{1 * ms, 9 * ms}, 99, 9 * ms},
		{"odd count median", []time.Duration{1 * ms, 2 * ms, 30 * ms}, 50, 2 * ms},
		{"hundred p50", hundred, 50, 50 * ms},
		{"hundred p99", hundred, 99, 99 * ms},
		{"hundred p100 is the max", hundred, 100, 100 * ms},
		{"hundred p1", hundred, 1, 1 * ms},
		{"tiny p clamps to the min", hundred, 0.0001, 1 * ms},
		{"p above 100 clamps to the max", hundred, 150, 100 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.sorted), tt.p, got, tt.want)
			}
		})
	}
}

func TestLagsOf(t *testing.T) {
	t0 := time.Now()
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	tests := []struct {
		name          string
		commits, seen []time.Time
		want          []time.Duration
	}{
		{"empty", nil, nil, []time.Duration{}},
		{"pairs by index", []time.Time{at(0), at(10)}, []time.Time{at(1), at(12)},
			[]time.Duration{time.Millisecond, 2 * time.Millisecond}},
		{"seen before the commit returned is 0", []time.Time{at(5)}, []time.Time{at(4)}, []time.Duration{0}},
		{"unseen commits are left out", []time.Time{at(0), at(10), at(20)}, []time.Time{at(3)},
			[]time.Duration{3 * time.Millisecond}},
		{"extra sightings are ignored", []time.Time{at(0)}, []time.Time{at(2), at(3)},
			[]time.Duration{2 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lagsOf(tt.commits, tt.seen); !slices.Equal(got, tt.want) {
				t.Errorf("lagsOf() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseLag(t *testing.T) {
	tests := []struct {
		text    string
		want    int64
		wantErr bool
	}{
		{"+0000000000\n", 0, false},
		{"+0000000012\n", 12, false},
		{"+2147483647\n", notSyncedLag, false},
		{"", 0, true},
		{"soon\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseLag(tt.text)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseLag(%q) = %d, %v; want %d, error %v", tt.text, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReplicaYAML(t *testing.T) {
	tests := []struct {
		name      string
		dbs       []string
		want, not []string
	}{
		{"all databases", nil, []string{
			`dir: "/r/data"`, `dir: "/r/mnt"`, `addr: "127.0.0.1:4322"`, "type: static", "candidate: false",
			"hostname: primary", `advertise-url: "http://127.0.0.1:4321"`,
		}, []string{"databases", "candidate: true"}},
		{"only some", []string{"snap.db", "a.db"}, []string{`databases: ["snap.db", "a.db"]`, "candidate: false"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := replicaYAML("/r/data", "/r/mnt", 4322, "http://127.0.0.1:4321", tt.dbs)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("config lacks %q:\n%s", w, got)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("config has %q:\n%s", n, got)
				}
			}
		})
	}
}

func TestSplitRows(t *testing.T) {
	tests := []struct {
		rows, parts int
		want        []int
	}{
		{51200, 4, []int{12800, 12800, 12800, 12800}},
		{10, 4, []int{3, 3, 2, 2}},
		{3, 4, []int{1, 1, 1}},
		{0, 4, nil},
		{5, 1, []int{5}},
	}
	for _, tt := range tests {
		if got := splitRows(tt.rows, tt.parts); !slices.Equal(got, tt.want) {
			t.Errorf("splitRows(%d, %d) = %v, want %v", tt.rows, tt.parts, got, tt.want)
		}
	}
}

func TestSnapRates(t *testing.T) {
	if got := snapRows(200); got != 51200 {
		t.Errorf("snapRows(200) = %d, want 51200", got)
	}
	tests := []struct {
		bytes int64
		d     time.Duration
		want  float64
	}{
		{200 * mib, time.Second, 200},
		{300 * mib, 2 * time.Second, 150},
		{mib, 0, 0},
		{mib, -time.Second, 0},
	}
	for _, tt := range tests {
		if got := mbPerSec(tt.bytes, tt.d); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("mbPerSec(%d, %v) = %v, want %v", tt.bytes, tt.d, got, tt.want)
		}
	}
	st := snapStats{bytes: 600 * mib, catchUp: 2 * time.Second, copyTime: time.Second}
	if st.rate() != 300 || st.copyRate() != 600 {
		t.Errorf("rate() = %v, copyRate() = %v; want 300, 600", st.rate(), st.copyRate())
	}
}

// sampleRepl is a replication result with one passing and one missing lag
// run and a catch-up at 150 MB/s against a 600 MB/s copy.
func sampleRepl(reconnects int) replResult {
	phases := lagPhases()
	return replResult{
		snapMB: 200,
		lags: []lagStats{
			{phase: phases[0], rate: 100, n: 500, p50: 400 * time.Microsecond, p99: 2 * time.Millisecond, poll: 30 * time.Microsecond},
			{phase: phases[1], rate: 2000, n: 6000, p50: 3 * time.Millisecond, p99: 9 * time.Millisecond,
				poll: 50 * time.Microsecond, reconnects: reconnects},
		},
		snap: snapStats{bytes: 300 * mib, catchUp: 2 * time.Second, copyTime: time.Second / 2},
	}
}

func TestReplFigures(t *testing.T) {
	figs := sampleRepl(0).figures()
	type row struct{ value, target, ratio, verdict string }
	want := []row{
		{"0.40 ms", "<= 1 ms", "-", "PASS"},
		{"2.00 ms", "<= 5 ms", "-", "PASS"},
		{"3.00 ms", "<= 1 ms", "-", "MISS"},
		{"9.00 ms", "<= 5 ms", "-", "MISS"},
		{"150 MB/s", ">= 300 MB/s", "0.25x", "MISS"},
	}
	if len(figs) != len(want) {
		t.Fatalf("%d figures, want %d", len(figs), len(want))
	}
	for i, f := range figs {
		got := row{f.format(f.value), f.targetString(), f.ratioString(), f.target.verdict(f.value)}
		if got != want[i] {
			t.Errorf("figure %d (%s) = %+v, want %+v", i, f.name, got, want[i])
		}
	}
	if !strings.HasPrefix(figs[0].name, "lag p50, 100 tx/s for 5s") || !strings.HasPrefix(figs[4].name, "snapshot catch-up, 300 MB") {
		t.Errorf("figure names: %q, %q", figs[0].name, figs[4].name)
	}
}

func TestPrintReplication(t *testing.T) {
	for _, reconnects := range []int{0, 3} {
		var buf bytes.Buffer
		if err := printReplication(&buf, sampleRepl(reconnects)); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		for _, want := range []string{"replication", "baseline", "poll 0.03 ms", "copy 600 MB/s", "PASS", "MISS", replReferenceNote} {
			if !strings.Contains(out, want) {
				t.Errorf("reconnects %d: output lacks %q:\n%s", reconnects, want, out)
			}
		}
		if got := strings.Contains(out, "max rate: 3"); got != (reconnects > 0) {
			t.Errorf("reconnects %d: reconnect note shown = %v:\n%s", reconnects, got, out)
		}
	}
}

func TestWriteJSONReplication(t *testing.T) {
	var buf bytes.Buffer
	repl := sampleRepl(2)
	if err := writeJSON(&buf, config{duration: time.Second, rows: 10, snapshotMB: 200}, nil, &repl, nil, nil); err != nil {
		t.Fatal(err)
	}
	var rep jsonReport
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		t.Fatalf("bad JSON: %v\n%s", err, buf.String())
	}
	r := rep.Replication
	if r.SnapshotMB != 200 || r.SnapshotBytes != 300*mib || len(r.Figures) != 5 {
		t.Fatalf("replication = %+v", r)
	}
	if f := r.Figures[2]; f.Result != "MISS" || f.Value != 3 || f.Reconnects == nil || *f.Reconnects != 2 || f.Ratio != nil {
		t.Errorf("max-rate p50 figure = %+v", f)
	}
	if f := r.Figures[4]; f.Unit != "MB/s" || f.Ratio == nil || *f.Ratio != 0.25 || f.Reconnects != nil {
		t.Errorf("catch-up figure = %+v", f)
	}
}

func TestCountLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.log")
	log := "a\nlevel=WARN msg=\"disconnected from primary\"\nb\nlevel=WARN msg=\"disconnected from primary\"\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		substr string
		want   int
	}{
		{reconnectMark, 2},
		{"level=", 2},
		{"absent", 0},
	}
	for _, tt := range tests {
		if got, err := countLines(path, tt.substr); err != nil || got != tt.want {
			t.Errorf("countLines(%q) = %d, %v; want %d", tt.substr, got, err, tt.want)
		}
	}
	if _, err := countLines(filepath.Join(t.TempDir(), "missing"), "x"); err == nil {
		t.Error("countLines of a missing file: no error")
	}
}
