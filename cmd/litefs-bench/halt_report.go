package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Reporting of the HALT section: the table rows and the JSON form.

// haltFigure is one row of the HALT table.
type haltFigure struct {
	name     string
	baseline string  // what it is compared with, measured in this run
	value    string  // the figure, formatted
	ratio    string  // value/baseline where that reads, else "-"
	judged   float64 // the number the target is judged on
	target   target
	limit    string // the target, formatted with its unit
}

// figures returns the HALT table's rows.
func (r haltResult) figures() []haltFigure {
	rate := func(v float64) string { return fmt.Sprintf("%.0f writes/s", v) }
	stall := max(0, r.contended.pct(100)-percentile(r.halter.iters, 100))
	contRatio := ratio(r.alone.rate(), r.contended.rate())
	return []haltFigure{
		{
			name:     "forwarded write p50 (Halt, insert, Unhalt)",
			baseline: "primary insert " + formatMS(r.primary.pct(50)), value: formatMS(r.forwarded.pct(50)), ratio: "-",
			judged: ms(r.forwarded.pct(50)), target: atMost(2), limit: "<= 2 ms",
		},
		{
			name:     "forwarded write p99",
			baseline: "primary insert " + formatMS(r.primary.pct(99)), value: formatMS(r.forwarded.pct(99)), ratio: "-",
			limit: "-",
		},
		{
			name:     fmt.Sprintf("forwarded writes/s, 1 insert per HALT (%d)", r.forwarded.writes),
			baseline: "primary " + rate(r.primary.rate()), value: rate(r.forwarded.rate()),
			ratio:  formatRatio(ratio(r.primary.rate(), r.forwarded.rate())),
			judged: r.forwarded.rate(), target: atLeast(400), limit: ">= 400 writes/s",
		},
		{
			name:     fmt.Sprintf("forwarded writes/s, %d inserts per HALT (%d)", haltBatch, r.batched.writes),
			baseline: "primary " + rate(r.primary.rate()), value: rate(r.batched.rate()),
			ratio: formatRatio(ratio(r.primary.rate(), r.batched.rate())), limit: "-",
		},
		{
			name:     fmt.Sprintf("primary writes/s under repeated HALTs (%d HALTs)", len(r.halter.iters)),
			baseline: "alone " + rate(r.alone.rate()), value: rate(r.contended.rate()), ratio: formatRatio(contRatio),
			judged: contRatio, target: atLeast(0.5), limit: ">= 0.50x",
		},
		{
			name:     "primary's max single-write latency under HALTs",
			baseline: "alone " + formatMS(r.alone.pct(100)), value: formatMS(r.contended.pct(100)), ratio: "-",
			limit: "-",
		},
		{
			name:     "primary write stall beyond the halter's transaction",
			baseline: "halter max " + formatMS(percentile(r.halter.iters, 100)), value: formatMS(stall), ratio: "-",
			judged: ms(stall), target: atMost(ms(haltStallMax)), limit: fmt.Sprintf("<= %d ms", haltStallMax.Milliseconds()),
		},
	}
}

// printHalt writes the HALT table and its footnotes.
func printHalt(w io.Writer, r haltResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HALT write forwarding\tbaseline\tvalue\tratio\ttarget\tresult")
	for _, f := range r.figures() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.name, f.baseline, f.value, f.ratio, f.limit, f.target.verdict(f.judged))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write HALT table: %w", err)
	}
	h := r.halter
	_, err := fmt.Fprintf(w, "forwarded: on a replica, litefs-go Halt (F_OFD_SETLKW, byte 72 of %s-lock, opened once) -> INSERT of one row "+
		"(its own transaction, WAL, synchronous=NORMAL, connection opened once) -> Unhalt, per iteration; "+
		"baseline \"primary\": the same INSERT on the primary's mount\n"+
		"under HALTs: the primary's insert loop (busy_timeout 5 s) alone, then while a replica loops Halt -> INSERT -> Unhalt: "+
		"halter p50 %s, max %s (Halt called -> Unhalt returned; lock held max %s), %d failed iterations; "+
		"primary writes that hit SQLITE_BUSY: %d\n"+
		"stall: the primary's max single-write latency under HALTs minus the halter's max iteration\n"+
		"recorded by litefs: %s went from TXID %d to %d: %d insert transactions committed, one TXID each\n%s\n",
		haltDB, formatMS(percentile(h.iters, 50)), formatMS(percentile(h.iters, 100)), formatMS(h.maxHold), h.errors,
		r.contended.busy, haltDB, r.base, r.txid, r.committed, haltReferenceNote)
	if err != nil {
		return fmt.Errorf("write HALT notes: %w", err)
	}
	return nil
}

// jsonHaltFigure is one HALT figure in the -json output.
type jsonHaltFigure struct {
	Figure   string `json:"figure"`
	Baseline string `json:"baseline"`
	Value    string `json:"value"`
	Ratio    string `json:"ratio"`
	Target   string `json:"target"`
	Result   string `json:"result"`
}

// jsonHalt is the HALT part of the -json output; times in milliseconds.
type jsonHalt struct {
	Figures          []jsonHaltFigure `json:"figures"`
	ForwardedP50MS   float64          `json:"forwarded_p50_ms"`
	ForwardedP99MS   float64          `json:"forwarded_p99_ms"`
	ForwardedRate    float64          `json:"forwarded_writes_per_s"`
	BatchedRate      float64          `json:"batched_writes_per_s"`
	PrimaryP50MS     float64          `json:"primary_p50_ms"`
	PrimaryRate      float64          `json:"primary_writes_per_s"`
	AloneRate        float64          `json:"primary_alone_writes_per_s"`
	ContendedRate    float64          `json:"primary_under_halts_writes_per_s"`
	ContendedMaxMS   float64          `json:"primary_under_halts_max_ms"`
	HalterMaxMS      float64          `json:"halter_max_ms"`
	Halts            int              `json:"halts"`
	HalterErrors     int              `json:"halter_errors"`
	PrimaryBusyCount int              `json:"primary_busy_errors"`
	Note             string           `json:"reference"`
}

// haltJSON converts the HALT figures for the -json output.
func haltJSON(r haltResult) *jsonHalt {
	out := &jsonHalt{
		ForwardedP50MS: ms(r.forwarded.pct(50)), ForwardedP99MS: ms(r.forwarded.pct(99)),
		ForwardedRate: r.forwarded.rate(), BatchedRate: r.batched.rate(),
		PrimaryP50MS: ms(r.primary.pct(50)), PrimaryRate: r.primary.rate(),
		AloneRate: r.alone.rate(), ContendedRate: r.contended.rate(), ContendedMaxMS: ms(r.contended.pct(100)),
		HalterMaxMS: ms(percentile(r.halter.iters, 100)), Halts: len(r.halter.iters), HalterErrors: r.halter.errors,
		PrimaryBusyCount: r.contended.busy, Note: haltReferenceNote,
	}
	for _, f := range r.figures() {
		out.Figures = append(out.Figures, jsonHaltFigure{
			Figure: f.name, Baseline: f.baseline, Value: f.value, Ratio: f.ratio, Target: f.limit, Result: f.target.verdict(f.judged),
		})
	}
	return out
}
