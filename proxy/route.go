package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// serveWrite sends a write to the primary's application: here on the
// primary, else forwarded (once: a forwarded request reaching a replica
// gets 503).
func (s *Server) serveWrite(w http.ResponseWriter, r *http.Request, forwarded bool) {
	prior := priorTargets(r, s.cfg.DB) // a write does not wait: a bad cookie is replaced
	if s.store.IsPrimary() {
		metrics.requests[routeLocalWrite].Add(1)
		s.serveLocal(w, r, &reqState{in: r, write: true, prior: prior})
		return
	}
	if forwarded {
		metrics.forwardErrors.Add(1)
		httpError(w, http.StatusServiceUnavailable, "litefs proxy: a write forwarded to this node, which is not the primary "+
			"(a failover is under way?): not forwarding it again; retry")
		return
	}
	s.forward(w, r)
}

// priorTargets returns the TXIDs r's cookies carry, none if malformed.
func priorTargets(r *http.Request, db string) Targets {
	t, err := ParseTargets(r, db)
	if err != nil {
		return Targets{}
	}
	return t
}

// serveRead waits until this node has the TXIDs of r's cookies, then
// sends r to the local application.
func (s *Server) serveRead(w http.ResponseWriter, r *http.Request, forwarded bool) {
	t, err := ParseTargets(r, s.cfg.DB)
	if err != nil {
		httpError(w, http.StatusBadRequest, "litefs proxy: "+err.Error())
		return
	}
	st := &reqState{in: r}
	if !s.store.IsPrimary() && len(t) > 0 {
		start := time.Now()
		waited, err := s.waitTargets(r.Context(), t)
		if waited {
			metrics.waitSeconds.observe(time.Since(start))
		}
		if err != nil {
			if r.Context().Err() == nil {
				metrics.waitTimeouts.Add(1)
				s.emit(EventWaitTimeout, r.Method, r.URL.Path, err.Error())
				clearCookies(w.Header())
				httpError(w, http.StatusGatewayTimeout, "litefs proxy: "+err.Error()+
					" (the TXID cookies are cleared: the next request reads without waiting)")
			}
			return
		}
		if waited {
			metrics.requests[routeWaitedRead].Add(1)
		} else {
			metrics.requests[routeLocalRead].Add(1)
		}
	} else {
		metrics.requests[routeLocalRead].Add(1)
	}
	st.retry = s.cfg.RetryFailedReadsOnPrimary && !forwarded && !s.store.IsPrimary() && bodyless(r)
	if s.store.IsPrimary() {
		st.tag, st.prior = true, t
	}
	s.serveLocal(w, r, st)
}

// bodyless reports whether r may be replayed: a GET or HEAD without body.
func bodyless(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0)
}

// waitTargets waits until every database of t reaches its TXID, at most
// proxy.max-lag; it is woken by the store's commits and applies, not by
// polling. waited reports whether it had to wait at all.
func (s *Server) waitTargets(ctx context.Context, t Targets) (waited bool, err error) {
	if s.missing(t) == "" {
		return false, nil // the common case: no subscription needed
	}
	sub := s.store.Subscribe() // before the next check: no change is missed
	defer sub.Close()
	timer := time.NewTimer(s.cfg.MaxLag)
	defer timer.Stop()
	for {
		missing := s.missing(t)
		if missing == "" {
			return true, nil
		}
		select {
		case <-sub.C:
		case <-timer.C:
			return true, fmt.Errorf("this replica has not received the client's last write within proxy.max-lag %s: %s; retry later",
				s.cfg.MaxLag, missing)
		case <-ctx.Done():
			return true, errors.Join(ctx.Err(), errors.New("client gone"))
		}
	}
}

// missing describes the databases of t this node has not reached, "" if
// none.
func (s *Server) missing(t Targets) string {
	var out []string
	for name, want := range t {
		db := s.store.DB(name)
		switch {
		case db == nil:
			out = append(out, fmt.Sprintf("%s: not here yet, want TXID %s", name, want))
		case db.Pos().TXID < want:
			out = append(out, fmt.Sprintf("%s: at TXID %s, want %s", name, db.Pos().TXID, want))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
