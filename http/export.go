package http

import (
	"bufio"
	"fmt"
	nethttp "net/http"
	"strconv"
	"time"

	"github.com/superfly/ltx"
)

// HeaderPos carries a database position ("<txid>/<checksum>") on export
// and import responses.
const HeaderPos = "Litefs-Pos"

// handleExport answers GET /export?name=N with a consistent copy of the
// database as a plain SQLite file. It works on every node.
func (s *Server) handleExport(w nethttp.ResponseWriter, r *nethttp.Request) {
	name, ok := nameParam(w, r)
	if !ok {
		return
	}
	db := s.store.DB(name)
	if db == nil {
		httpError(w, nethttp.StatusNotFound, fmt.Sprintf("database %q not found", name))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	if db.Pos().TXID == 0 { // created, never written: an empty SQLite file
		w.Header().Set("Content-Length", "0")
		w.Header().Set(HeaderPos, ltx.Pos{}.String())
		w.WriteHeader(nethttp.StatusOK)
		return
	}

	start := time.Now()
	f, pos, _, err := s.writeSnapshotTemp(ctx, db)
	if err != nil {
		httpError(w, nethttp.StatusInternalServerError, fmt.Sprintf("export %q: %v", name, err))
		return
	}
	defer removeTemp(f)
	fi, err := f.Stat()
	var hdr ltx.Header
	if err == nil {
		hdr, _, _, err = readLTXEnds(f, fi.Size())
	}
	if err != nil {
		httpError(w, nethttp.StatusInternalServerError, fmt.Sprintf("export %q: read snapshot: %v", name, err))
		return
	}
	size := int64(hdr.Commit) * int64(hdr.PageSize)
	w.Header().Set("Content-Type", "application/vnd.sqlite3")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name))
	w.Header().Set(HeaderPos, pos.String())
	w.WriteHeader(nethttp.StatusOK)
	rc := nethttp.NewResponseController(w)
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	out := &deadlineWriter{w: w, rc: rc, timeout: s.opts.WriteTimeout}
	if err := ltx.NewDecoder(bufio.NewReaderSize(f, 256<<10)).DecodeDatabaseTo(out); err != nil {
		// The status is sent: cut the connection so the client sees a
		// short body, never a file that looks complete.
		s.log.Error("export failed", "db", name, "error", err)
		panic(nethttp.ErrAbortHandler)
	}
	metrics.exportsTotal.Add(1)
	s.log.Info("database exported", "db", name, "txid", pos.TXID.String(), "bytes", size,
		"duration", time.Since(start).Round(time.Millisecond))
}
