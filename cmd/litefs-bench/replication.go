package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
	"time"
)

// replReferenceNote gives the replication figures of the system litefs
// replaces, for context.
const replReferenceNote = "reference: LiteFS v0.5 on this machine class: lag ~4 ms p50 and ~20 ms p99 at 50 tx/s; snapshot catch-up ~75 MB/s"

// replResult holds the replication figures of one run.
type replResult struct {
	lags   []lagStats
	snap   snapStats
	snapMB int
}

// runReplication measures replication against the recording primary: the
// lag seen by a replica that follows it, then the catch-up rate of a new,
// empty replica on a large database.
func runReplication(ctx context.Context, opts options, w *workDir, primary *daemon, progress io.Writer) (replResult, error) {
	r := replResult{snapMB: opts.snapshotMB}
	if err := primary.check(); err != nil {
		return r, fmt.Errorf("before replication: %w", err)
	}
	var err error
	if r.lags, err = measureLag(ctx, opts.litefs, w, primary, progress); err != nil {
		return r, err
	}
	fmt.Fprintf(progress, "==> snapshot catch-up of a %d MB database\n", opts.snapshotMB)
	if r.snap, err = runSnapshot(ctx, opts.litefs, w, primary, opts.snapshotMB, progress); err != nil {
		return r, err
	}
	if err := primary.check(); err != nil {
		return r, fmt.Errorf("after replication: %w", err)
	}
	return r, nil
}

// measureLag starts a replica of primary, runs the lag phases and stops the
// replica again on every path out.
func measureLag(ctx context.Context, bin string, w *workDir, primary *daemon, progress io.Writer) (stats []lagStats, err error) {
	fmt.Fprintf(progress, "==> starting a replica in %s\n", w.replica.mnt)
	began := time.Now()
	rep, err := startReplica(ctx, bin, w.replica, primary)
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := rep.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stop replica: %w", stopErr))
		}
	}()
	fmt.Fprintf(progress, "    %-45s %s\n", "replica started and caught up", time.Since(began).Round(time.Millisecond))
	return runLag(ctx, primary, rep, progress)
}

// replFigure is one row of the replication table. Targets are absolute
// limits on value, in unit.
type replFigure struct {
	name         string
	unit         string  // "ms" or "MB/s"
	baselineKind string  // what the baseline is: "poll" or "copy"
	baseline     float64 // measured in this run, in unit
	value        float64
	target       target
	rate         float64 // lag figures: achieved tx/s on the primary
	n            int     // lag figures: transactions measured
	reconnects   *int    // lag figures: the replica's stream reconnects during the run
}

// figures returns the replication table's rows.
func (r replResult) figures() []replFigure {
	var out []replFigure
	for _, l := range r.lags {
		desc := fmt.Sprintf("%s for %s (%.0f tx/s, %d tx)", l.phase.name, l.phase.duration, l.rate, l.n)
		row := replFigure{unit: "ms", baselineKind: "poll", baseline: ms(l.poll), rate: l.rate, n: l.n, reconnects: &l.reconnects}
		p50, p99 := row, row
		p50.name, p50.value, p50.target = "lag p50, "+desc, ms(l.p50), atMost(1)
		p99.name, p99.value, p99.target = "lag p99, "+desc, ms(l.p99), atMost(5)
		out = append(out, p50, p99)
	}
	return append(out, replFigure{
		name: fmt.Sprintf("snapshot catch-up, %.0f MB database", float64(r.snap.bytes)/mib),
		unit: "MB/s", baselineKind: "copy", baseline: r.snap.copyRate(), value: r.snap.rate(),
		target: atLeast(300),
	})
}

// ms converts a duration to milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// format formats v in the figure's unit: "0.42 ms", "312 MB/s".
func (f replFigure) format(v float64) string {
	if f.unit == "ms" {
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f %s", v, f.unit)
}

// targetString formats the target with its unit: "<= 1 ms", ">= 300 MB/s".
func (f replFigure) targetString() string {
	if f.target.bound == boundNone {
		return "-"
	}
	op := ">="
	if f.target.bound == boundMax {
		op = "<="
	}
	return fmt.Sprintf("%s %g %s", op, f.target.limit, f.unit)
}

// ratioString is value/baseline for throughput figures and "-" for lag
// figures, whose baseline is only the measurement's resolution.
func (f replFigure) ratioString() string {
	if f.baselineKind != "copy" {
		return "-"
	}
	return formatRatio(ratio(f.baseline, f.value))
}

// printReplication writes the replication table and its footnotes.
func printReplication(w io.Writer, r replResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "replication\tbaseline\tvalue\tratio\ttarget\tresult")
	for _, f := range r.figures() {
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\t%s\n", f.name, f.baselineKind, f.format(f.baseline),
			f.format(f.value), f.ratioString(), f.targetString(), f.target.verdict(f.value))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write replication table: %w", err)
	}
	_, err := fmt.Fprintf(w, "lag: commit returned on the primary -> TXID shown by a tight poll of the replica's %s-pos; "+
		"baseline \"poll\": the mean time of one such read (the resolution)\n"+
		"catch-up: new replica with an empty data dir started -> its %s-pos equals the primary's; "+
		"baseline \"copy\": plain copy of the primary's database file + fsync; 1 MB = 2^20 bytes\n%s\n",
		lagDB, snapDB, replReferenceNote)
	if err != nil {
		return fmt.Errorf("write replication notes: %w", err)
	}
	return printReconnects(w, r.lags)
}

// printReconnects notes the replica's stream reconnects during the lag
// runs, if there were any: each one stalls replication for
// lease.reconnect-delay and explains lag figures near that delay.
func printReconnects(w io.Writer, lags []lagStats) error {
	var parts []string
	total := 0
	for _, l := range lags {
		parts = append(parts, fmt.Sprintf("%s: %d", l.phase.name, l.reconnects))
		total += l.reconnects
	}
	if total == 0 {
		return nil
	}
	_, err := fmt.Fprintf(w, "note: the replica's stream broke and reconnected during the lag runs (%s); "+
		"each break stalls replication for lease.reconnect-delay (1s): see the replica's log with -keep\n",
		strings.Join(parts, ", "))
	if err != nil {
		return fmt.Errorf("write replication notes: %w", err)
	}
	return nil
}

// jsonReplFigure is one replication figure in the -json output.
type jsonReplFigure struct {
	Figure       string   `json:"figure"`
	Unit         string   `json:"unit"`
	BaselineKind string   `json:"baseline_kind"`
	Baseline     float64  `json:"baseline"`
	Value        float64  `json:"value"`
	Ratio        *float64 `json:"ratio"` // null for lag figures
	Target       string   `json:"target"`
	Result       string   `json:"result"`
	Rate         float64  `json:"rate_tx_per_s,omitempty"`
	Transactions int      `json:"transactions,omitempty"`
	Reconnects   *int     `json:"stream_reconnects,omitempty"`
}

// jsonReplication is the replication part of the -json output.
type jsonReplication struct {
	SnapshotMB    int              `json:"snapshot_mb"`
	SnapshotBytes int64            `json:"snapshot_bytes"`
	Figures       []jsonReplFigure `json:"figures"`
	Note          string           `json:"reference"`
}

// replicationJSON converts the replication figures for the -json output.
func replicationJSON(r replResult) jsonReplication {
	out := jsonReplication{SnapshotMB: r.snapMB, SnapshotBytes: r.snap.bytes, Note: replReferenceNote}
	for _, f := range r.figures() {
		jf := jsonReplFigure{
			Figure: f.name, Unit: f.unit, BaselineKind: f.baselineKind, Baseline: f.baseline, Value: f.value,
			Target: f.targetString(), Result: f.target.verdict(f.value), Rate: f.rate, Transactions: f.n,
			Reconnects: f.reconnects,
		}
		if q := ratio(f.baseline, f.value); f.baselineKind == "copy" && !math.IsNaN(q) && !math.IsInf(q, 0) {
			jf.Ratio = &q
		}
		out.Figures = append(out.Figures, jf)
	}
	return out
}
