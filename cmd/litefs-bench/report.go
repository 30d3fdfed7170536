package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"text/tabwriter"
)

// referenceNote gives the figures of the system litefs replaces, for context.
const referenceNote = "reference: LiteFS v0.5 on this machine class: WAL+NORMAL ~0.01x, bulk ~4.4x"

// bound says which side of a target limit a ratio must be on.
type bound int

const (
	boundNone bound = iota // no target: the figure is informational
	boundMin               // ratio >= limit passes
	boundMax               // ratio <= limit passes
)

// target is the goal a workload's litefs/plain ratio is judged against.
type target struct {
	bound bound
	limit float64
}

func atLeast(limit float64) target { return target{bound: boundMin, limit: limit} }
func atMost(limit float64) target  { return target{bound: boundMax, limit: limit} }
func noTarget() target             { return target{} }

// String formats the target as it appears in the table: ">= 0.20", "<= 1.50"
// or "-".
func (t target) String() string {
	switch t.bound {
	case boundMin:
		return fmt.Sprintf(">= %.2f", t.limit)
	case boundMax:
		return fmt.Sprintf("<= %.2f", t.limit)
	}
	return "-"
}

// verdict judges a ratio: "PASS", "MISS", or "-" when there is no target.
// A ratio that could not be computed (NaN) misses any target.
func (t target) verdict(ratio float64) string {
	if t.bound == boundNone {
		return "-"
	}
	if math.IsNaN(ratio) {
		return "MISS"
	}
	if t.bound == boundMin && ratio >= t.limit || t.bound == boundMax && ratio <= t.limit {
		return "PASS"
	}
	return "MISS"
}

// ratio returns litefs/plain: for rates the share of the baseline's
// throughput litefs keeps, for times how many times longer litefs takes. It
// is NaN when the baseline is not positive.
func ratio(plain, litefs float64) float64 {
	if !(plain > 0) || math.IsNaN(litefs) {
		return math.NaN()
	}
	return litefs / plain
}

// formatRatio formats a ratio as "0.42x", or "n/a" when it is NaN.
func formatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", r)
}

// formatValue formats a measurement in its unit: "12345 tx/s" or "0.412 s".
func formatValue(u unit, v float64) string {
	if u == unitSeconds {
		return fmt.Sprintf("%.3f s", v)
	}
	return fmt.Sprintf("%.0f tx/s", v)
}

// result is one workload's figures from both directories.
type result struct {
	workload workload
	plain    measurement
	bare     measurement // the same workload on a mount that records nothing
	litefs   measurement
	txid     uint64 // litefs database's TXID after the run
}

// ratio returns the result's litefs/plain ratio.
func (r result) ratio() float64 { return ratio(r.plain.value, r.litefs.value) }

// printTable writes the comparison table and the reference footnote.
func printTable(w io.Writer, results []result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tplain\tfuse only\tlitefs\tratio\ttarget\tresult\tlitefs/fuse only")
	for _, r := range results {
		wl := r.workload
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", wl.name,
			formatValue(wl.unit, r.plain.value), formatValue(wl.unit, r.bare.value), formatValue(wl.unit, r.litefs.value),
			formatRatio(r.ratio()), wl.target, wl.target.verdict(r.ratio()), formatRatio(ratio(r.bare.value, r.litefs.value)))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	_, err := fmt.Fprintf(w, "ratio: litefs/plain (rates) or litefs time/plain time (bulk); all measured in this run\n"+
		"fuse only: the same daemon with recording turned off (LITEFS_BENCH_PASSTHROUGH=1): what FUSE alone costs\n%s\n", referenceNote)
	return err
}

// printRecorded writes, for each litefs database, its TXID next to the
// number of write transactions the benchmark committed to it.
func printRecorded(w io.Writer, results []result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "recorded by litefs\tTXID\tcommitted")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", r.workload.db, r.txid, r.litefs.committed)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write recorded positions: %w", err)
	}
	return nil
}

// jsonFigure is one workload in the -json output.
type jsonFigure struct {
	Workload string   `json:"workload"`
	DB       string   `json:"db"`
	Unit     string   `json:"unit"`
	Plain    float64  `json:"plain"`
	FuseOnly float64  `json:"fuse_only"`
	LiteFS   float64  `json:"litefs"`
	Ratio    *float64 `json:"ratio"` // null when it cannot be computed
	Target   string   `json:"target"`
	Result   string   `json:"result"`
	TXID     uint64   `json:"txid"`
	Commits  uint64   `json:"committed"`
}

// jsonReport is the whole -json output.
type jsonReport struct {
	Duration    string           `json:"duration"`
	Rows        int              `json:"rows"`
	Sections    []string         `json:"sections"`
	Figures     []jsonFigure     `json:"figures,omitempty"`
	Note        string           `json:"reference"`
	Replication *jsonReplication `json:"replication,omitempty"`
	Halt        *jsonHalt        `json:"halt,omitempty"`
	Proxy       *jsonProxy       `json:"proxy,omitempty"`
}

// writeJSON writes the results as one indented JSON document. A nil repl,
// halt or prox is a section that did not run and is left out.
func writeJSON(w io.Writer, cfg config, results []result, repl *replResult, halt *haltResult, prox *proxyResult) error {
	rep := jsonReport{Duration: cfg.duration.String(), Rows: cfg.rows, Note: referenceNote}
	if results != nil {
		rep.Sections = append(rep.Sections, sectionWorkloads)
	}
	if repl != nil {
		j := replicationJSON(*repl)
		rep.Replication = &j
		rep.Sections = append(rep.Sections, sectionReplication)
	}
	if halt != nil {
		rep.Halt = haltJSON(*halt)
		rep.Sections = append(rep.Sections, sectionHalt)
	}
	if prox != nil {
		rep.Proxy = proxyJSON(*prox)
		rep.Sections = append(rep.Sections, sectionProxy)
	}
	for _, r := range results {
		f := jsonFigure{
			Workload: r.workload.name, DB: r.workload.db, Unit: unitName(r.workload.unit),
			Plain: r.plain.value, FuseOnly: r.bare.value, LiteFS: r.litefs.value,
			Target: r.workload.target.String(), Result: r.workload.target.verdict(r.ratio()),
			TXID: r.txid, Commits: r.litefs.committed,
		}
		if q := r.ratio(); !math.IsNaN(q) && !math.IsInf(q, 0) {
			f.Ratio = &q
		}
		rep.Figures = append(rep.Figures, f)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// unitName names a unit in the JSON output.
func unitName(u unit) string {
	if u == unitSeconds {
		return "seconds"
	}
	return "tx_per_s"
}
