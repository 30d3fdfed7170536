package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Reporting of the proxy section: the table rows and the JSON form.

// Targets of issue 16.
const (
	proxyReadOverheadMax = 200 * time.Microsecond // local read overhead p50
	proxyForwardExtraMax = time.Millisecond       // a forwarded write's extra p50 on loopback
)

// formatMS3 formats a duration in milliseconds with three decimals.
func formatMS3(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// readOverhead is the local read's p50 through the proxy minus direct.
func (r proxyResult) readOverhead() time.Duration {
	return r.readProxied.pct(50) - r.readDirect.pct(50)
}

// forwardExtra is the forwarded write's p50 minus the direct write's.
func (r proxyResult) forwardExtra() time.Duration {
	return r.writeForwarded.pct(50) - r.writeDirect.pct(50)
}

// figures returns the proxy table's rows.
func (r proxyResult) figures() []haltFigure {
	rate := func(v float64) string { return fmt.Sprintf("%.0f req/s", v) }
	direct := func(d time.Duration) string { return "app direct " + formatMS3(d) }
	p50 := func(run reqRun) time.Duration { return run.pct(50) }
	p99 := func(run reqRun) time.Duration { return run.pct(99) }
	return []haltFigure{
		{
			name:     "local read p50 (GET on the replica)",
			baseline: direct(p50(r.readDirect)), value: formatMS3(p50(r.readProxied)),
			ratio: formatRatio(ratio(ms(p50(r.readDirect)), ms(p50(r.readProxied)))), limit: "-",
		},
		{
			name: "local read overhead p50", baseline: "-", value: formatMS3(r.readOverhead()), ratio: "-",
			judged: ms(r.readOverhead()), target: atMost(ms(proxyReadOverheadMax)), limit: "<= 0.2 ms",
		},
		{
			name:     "local read p99",
			baseline: direct(p99(r.readDirect)), value: formatMS3(p99(r.readProxied)), ratio: "-", limit: "-",
		},
		{
			name:     "local reads/s (one client, sequential)",
			baseline: "app direct " + rate(r.readDirect.rate()), value: rate(r.readProxied.rate()),
			ratio: formatRatio(ratio(r.readDirect.rate(), r.readProxied.rate())), limit: "-",
		},
		{
			name:     "write p50 through the primary's proxy",
			baseline: direct(p50(r.writeDirect)), value: formatMS3(p50(r.writeLocal)), ratio: "-", limit: "-",
		},
		{
			name:     "forwarded write p50 (replica's proxy -> primary's)",
			baseline: direct(p50(r.writeDirect)), value: formatMS3(p50(r.writeForwarded)), ratio: "-", limit: "-",
		},
		{
			name: "forwarded write extra p50", baseline: "-", value: formatMS3(r.forwardExtra()), ratio: "-",
			judged: ms(r.forwardExtra()), target: atMost(ms(proxyForwardExtraMax)), limit: "<= 1 ms",
		},
		{
			name:     "forwarded write p99",
			baseline: direct(p99(r.writeDirect)), value: formatMS3(p99(r.writeForwarded)), ratio: "-", limit: "-",
		},
	}
}

// printProxy writes the proxy table and its footnotes.
func printProxy(w io.Writer, r proxyResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HTTP proxy (loopback)\tbaseline\tvalue\tratio\ttarget\tresult")
	for _, f := range r.figures() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.name, f.baseline, f.value, f.ratio, f.limit, f.target.verdict(f.judged))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write proxy table: %w", err)
	}
	_, err := fmt.Fprintf(w, "reads: GET of one row of %s by a Go app (go-sqlite3, through the replica's mount), "+
		"%d requests per path, one keep-alive client, in %d rounds alternating direct and proxied; overhead = proxied p50 - direct p50\n"+
		"writes: POST inserting one row (its own transaction, WAL, synchronous=NORMAL) by the primary's app: direct, "+
		"through the primary's proxy, and on the replica's proxy forwarded to the primary's, %d per path, interleaved the same way; "+
		"extra = forwarded p50 - direct p50\n"+
		"read-your-writes: %s\n"+
		"recorded by litefs: %s went from TXID %d to %d on the primary: %d writes answered 201, one TXID each\n",
		proxyDB, len(r.readDirect.lat), proxyRounds, len(r.writeDirect.lat), r.readYourWrite,
		proxyDB, r.base, r.txid, r.committed)
	if err != nil {
		return fmt.Errorf("write proxy notes: %w", err)
	}
	return nil
}

// jsonProxy is the proxy part of the -json output; times in milliseconds.
type jsonProxy struct {
	Figures            []jsonHaltFigure `json:"figures"`
	ReadDirectP50MS    float64          `json:"read_direct_p50_ms"`
	ReadProxiedP50MS   float64          `json:"read_proxied_p50_ms"`
	ReadOverheadP50MS  float64          `json:"read_overhead_p50_ms"`
	ReadDirectRate     float64          `json:"read_direct_per_s"`
	ReadProxiedRate    float64          `json:"read_proxied_per_s"`
	WriteDirectP50MS   float64          `json:"write_direct_p50_ms"`
	WriteLocalP50MS    float64          `json:"write_primary_proxy_p50_ms"`
	WriteForwardP50MS  float64          `json:"write_forwarded_p50_ms"`
	ForwardExtraP50MS  float64          `json:"forward_extra_p50_ms"`
	CommittedWrites    uint64           `json:"committed_writes"`
	ReadYourWriteCheck string           `json:"read_your_write"`
}

// proxyJSON converts the proxy figures for the -json output.
func proxyJSON(r proxyResult) *jsonProxy {
	out := &jsonProxy{
		ReadDirectP50MS: ms(r.readDirect.pct(50)), ReadProxiedP50MS: ms(r.readProxied.pct(50)),
		ReadOverheadP50MS: ms(r.readOverhead()),
		ReadDirectRate:    r.readDirect.rate(), ReadProxiedRate: r.readProxied.rate(),
		WriteDirectP50MS: ms(r.writeDirect.pct(50)), WriteLocalP50MS: ms(r.writeLocal.pct(50)),
		WriteForwardP50MS: ms(r.writeForwarded.pct(50)), ForwardExtraP50MS: ms(r.forwardExtra()),
		CommittedWrites: r.committed, ReadYourWriteCheck: r.readYourWrite,
	}
	for _, f := range r.figures() {
		out.Figures = append(out.Figures, jsonHaltFigure{
			Figure: f.name, Baseline: f.baseline, Value: f.value, Ratio: f.ratio, Target: f.limit, Result: f.target.verdict(f.judged),
		})
	}
	return out
}
