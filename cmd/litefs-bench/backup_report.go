package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// backupFigure is one row of the backup table. Lag and PUT targets bound the
// value; restore and commit-rate targets bound value/baseline.
type backupFigure struct {
	name         string
	unit         string // "ms", "/min", "MB/s" or "tx/s"
	baselineKind string
	baseline     float64
	value        float64
	target       target
	onRatio      bool // the target bounds value/baseline
}

// figures returns the backup table's rows.
func (r backupResult) figures() []backupFigure {
	var out []backupFigure
	syncMS := ms(backupSyncInterval)
	for _, l := range []backupLag{r.steady, r.full} {
		desc := fmt.Sprintf("%s for %s (%.0f tx/s, %d tx)", l.name, l.duration.Round(time.Second), l.rate(), l.commits)
		row := backupFigure{unit: "ms", baselineKind: "sync-interval", baseline: syncMS}
		p50, p99 := row, row
		p50.name, p50.value, p50.target = "backup lag p50, "+desc, ms(percentile(l.lags, 50)), noTarget()
		p99.name, p99.value, p99.target = "backup lag p99, "+desc, ms(percentile(l.lags, 99)), atMost(2000)
		out = append(out, p50, p99)
	}
	perMin := float64(r.puts) / r.steady.duration.Minutes()
	out = append(out, backupFigure{
		name: fmt.Sprintf("PUTs per minute at %.0f tx/s", r.steady.rate()), unit: "/min",
		baselineKind: "1 per tx", baseline: r.steady.rate() * 60, value: perMin, target: noTarget(),
	})
	out = append(out, backupFigure{
		name: fmt.Sprintf("restore, %.0f MB database", float64(r.restore.bytes)/mib), unit: "MB/s",
		baselineKind: "copy", baseline: r.restore.copyRate(), value: r.restore.rate(), target: atLeast(0.5), onRatio: true,
	})
	return append(out, backupFigure{
		name: fmt.Sprintf("commit rate with backup, full rate, %d rounds", backupRounds), unit: "tx/s",
		baselineKind: "backup off", baseline: r.offRate, value: r.full.rate(), target: atLeast(0.95), onRatio: true,
	})
}

// format formats v in the figure's unit.
func (f backupFigure) format(v float64) string {
	if f.unit == "ms" {
		return fmt.Sprintf("%.0f ms", v)
	}
	return fmt.Sprintf("%.0f %s", v, f.unit)
}

// targetString formats the target: "<= 2000 ms", ">= 0.50x" or "-".
func (f backupFigure) targetString() string {
	switch {
	case f.target.bound == boundNone:
		return "-"
	case f.onRatio:
		return fmt.Sprintf("%s%s", f.target, "x")
	}
	op := ">="
	if f.target.bound == boundMax {
		op = "<="
	}
	return fmt.Sprintf("%s %g %s", op, f.target.limit, f.unit)
}

// verdict judges the value or, for ratio targets, value/baseline.
func (f backupFigure) verdict() string {
	if f.onRatio {
		return f.target.verdict(ratio(f.baseline, f.value))
	}
	return f.target.verdict(f.value)
}

// printBackup writes the backup table and its notes.
func printBackup(w io.Writer, r backupResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "backup\tbaseline\tvalue\tratio\ttarget\tresult")
	for _, f := range r.figures() {
		fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\t%s\n", f.name, f.baselineKind, f.format(f.baseline),
			f.format(f.value), formatRatio(ratio(f.baseline, f.value)), f.targetString(), f.verdict())
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write backup table: %w", err)
	}
	var scaled string
	if r.backupMB != 1024 {
		scaled = fmt.Sprintf(" (-backup-mb %d; the issue asks for 1 GB)", r.backupMB)
	}
	_, err := fmt.Fprintf(w, "store: versitygw (posix backend) on 127.0.0.1, same disk; backup.sync-interval %s, other backup settings default\n"+
		"lag: commit returned on the primary -> the primary's GET /info (polled every %s) shows the bucket holding its TXID, "+
		"which it does once the PUT covering it returned; baseline: the sync interval\n"+
		"PUTs: objects the primary uploaded during the 100 tx/s run (level 0 and any compaction or snapshot); baseline: one PUT per transaction\n"+
		"restore: `litefs restore` of %s (incompressible 4000-byte rows%s) from the bucket, checksum verified; "+
		"baseline: plain copy of the primary's database file + fsync; 1 MB = 2^20 bytes\n"+
		"commit rate: single-row WAL inserts as fast as the primary takes them, alternating a primary without and one with backup; "+
		"failed syncs during the runs: %d\n",
		backupSyncInterval, backupPollEvery, restoreDB, scaled, r.errors)
	if err != nil {
		return fmt.Errorf("write backup notes: %w", err)
	}
	return nil
}
