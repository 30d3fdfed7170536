package http

import (
	"bufio"
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"sync/atomic"
)

// Process-wide counters of the HTTP layer, exposed by GET /metrics in the
// Prometheus text format (version 0.0.4). Counters are process-wide, as with
// Prometheus's default registry: a daemon runs one server and one replica
// loop.
var metrics struct {
	streamReconnects   atomic.Int64 // replica: stream (re)connect attempts after the first
	streamsActive      atomic.Int64 // primary: open /stream responses
	ltxFramesSent      atomic.Int64 // primary: LTX files sent (snapshots included)
	ltxFramesApplied   atomic.Int64 // replica: LTX files applied (snapshots included)
	snapshotsSent      atomic.Int64
	snapshotBytesSent  atomic.Int64
	snapshotsRecv      atomic.Int64
	snapshotBytesRecv  atomic.Int64
	importsTotal       atomic.Int64
	exportsTotal       atomic.Int64
	eventSubscriptions atomic.Int64 // open /events responses
}

// handleMetrics answers GET /metrics.
func (s *Server) handleMetrics(w nethttp.ResponseWriter, r *nethttp.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	bw := bufio.NewWriter(w)
	s.writeMetrics(bw)
	_ = bw.Flush()
}

// writeMetrics writes every metric in the Prometheus text format.
func (s *Server) writeMetrics(w io.Writer) {
	m := metricWriter{w: w}
	m.header("litefs_db_txid", "gauge", "Current transaction id of each database.")
	for name, pos := range s.store.Positions() {
		m.sample("litefs_db_txid", `db="`+escapeLabel(name)+`"`, float64(pos.TXID))
	}
	m.gauge("litefs_is_primary", "1 if this node is the primary, 0 otherwise.", boolFloat(s.store.IsPrimary()))
	m.gauge("litefs_connected", "1 if this node is the primary or a replica with its stream up.", boolFloat(s.store.Connected()))
	m.gauge("litefs_subscribers", "Open change subscriptions on the store (streams, event feeds).", float64(s.store.SubscriberN()))
	m.gauge("litefs_lag_seconds", "How far this node is behind the primary (0 on the primary).", s.store.Lag().Seconds())
	m.gauge("litefs_streams_active", "Open replication streams served by this node.", float64(metrics.streamsActive.Load()))
	m.gauge("litefs_event_subscriptions", "Open /events responses.", float64(metrics.eventSubscriptions.Load()))
	m.counter("litefs_stream_reconnects_total", "Replication stream reconnects of this replica.", metrics.streamReconnects.Load())
	m.header("litefs_ltx_frames_total", "counter", "LTX files sent to replicas or applied from the primary.")
	m.sample("litefs_ltx_frames_total", `direction="sent"`, float64(metrics.ltxFramesSent.Load()))
	m.sample("litefs_ltx_frames_total", `direction="applied"`, float64(metrics.ltxFramesApplied.Load()))
	m.header("litefs_snapshots_total", "counter", "Snapshots sent to replicas or received from the primary.")
	m.sample("litefs_snapshots_total", `direction="sent"`, float64(metrics.snapshotsSent.Load()))
	m.sample("litefs_snapshots_total", `direction="received"`, float64(metrics.snapshotsRecv.Load()))
	m.header("litefs_snapshot_bytes_total", "counter", "Bytes of snapshots sent or received.")
	m.sample("litefs_snapshot_bytes_total", `direction="sent"`, float64(metrics.snapshotBytesSent.Load()))
	m.sample("litefs_snapshot_bytes_total", `direction="received"`, float64(metrics.snapshotBytesRecv.Load()))
	m.counter("litefs_imports_total", "Databases imported through POST /import.", metrics.importsTotal.Load())
	m.counter("litefs_exports_total", "Databases exported through GET /export.", metrics.exportsTotal.Load())
	writeHaltMetrics(m)
	s.writeBackupMetrics(m)
	if s.opts.ExtraMetrics != nil {
		s.opts.ExtraMetrics(w)
	}
}

// metricWriter writes Prometheus text-format lines.
type metricWriter struct{ w io.Writer }

func (m metricWriter) header(name, typ, help string) {
	_, _ = fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
}

func (m metricWriter) sample(name, labels string, v float64) {
	if labels != "" {
		name += "{" + labels + "}"
	}
	_, _ = fmt.Fprintf(m.w, "%s %g\n", name, v)
}

func (m metricWriter) gauge(name, help string, v float64) {
	m.header(name, "gauge", help)
	m.sample(name, "", v)
}

func (m metricWriter) counter(name, help string, v int64) {
	m.header(name, "counter", help)
	m.sample(name, "", float64(v))
}

// escapeLabel escapes a label value as the text format requires.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
