package http

import (
	"crypto/tls"
	"fmt"
	nethttp "net/http"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// PosJSON is a database position in JSON: TXID and post-apply checksum as
// 16 lower-case hex digits each.
type PosJSON struct {
	TXID     string `json:"txid"`
	Checksum string `json:"checksum"`
}

// NewPosJSON formats pos.
func NewPosJSON(pos ltx.Pos) PosJSON {
	return PosJSON{TXID: pos.TXID.String(), Checksum: pos.PostApplyChecksum.String()}
}

// Pos parses the position; both fields must be exactly 16 hex digits.
func (p PosJSON) Pos() (ltx.Pos, error) {
	txid, err := ltx.ParseTXID(p.TXID)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("bad txid: %w", err)
	}
	sum, err := ltx.ParseChecksum(p.Checksum)
	if err != nil {
		return ltx.Pos{}, fmt.Errorf("bad checksum: %w", err)
	}
	return ltx.Pos{TXID: txid, PostApplyChecksum: sum}, nil
}

// InfoResponse is the body of GET /info.
type InfoResponse struct {
	NodeID    string                `json:"nodeID"`
	ClusterID string                `json:"clusterID,omitempty"`
	Role      string                `json:"role"` // "primary" or "replica"
	Candidate bool                  `json:"candidate"`
	Primary   PrimaryJSON           `json:"primary"`
	Connected bool                  `json:"connected"` // a replica's stream is up (always true on the primary)
	LagMillis int64                 `json:"lagMillis"` // how far behind the primary; see litefs.Store.Lag
	DBs       map[string]DBInfoJSON `json:"dbs"`
	MountDir  string                `json:"mountDir,omitempty"` // fuse.dir: where the databases are mounted
	Lease     string                `json:"lease,omitempty"`    // lease.type: "static" or "consul"
	Warnings  []string              `json:"warnings,omitempty"` // e.g. an API open to the network without a token
	ProxyURL  string                `json:"proxyURL,omitempty"` // this node's HTTP proxy for its peers (docs/proxy.md)
	Backup    []BackupStatus        `json:"backup,omitempty"`   // with backup: configured
}

// DBInfoJSON is one database in InfoResponse: its position and, on the
// primary, the node holding its HALT lock.
type DBInfoJSON struct {
	PosJSON
	HaltHolder string `json:"haltHolder,omitempty"` // 16 hex digits
}

// PrimaryJSON names the primary in InfoResponse.
type PrimaryJSON struct {
	Hostname string `json:"hostname,omitempty"`
	URL      string `json:"url,omitempty"`
}

// Role names used by /info.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// handleInfo answers GET /info.
func (s *Server) handleInfo(w nethttp.ResponseWriter, r *nethttp.Request) {
	host, url := s.primaryInfo()
	resp := InfoResponse{
		NodeID:    litefs.FormatNodeID(s.store.NodeID()),
		ClusterID: s.store.ClusterID(),
		Role:      RoleReplica,
		Candidate: s.opts.Candidate,
		Primary:   PrimaryJSON{Hostname: host, URL: url},
		Connected: s.store.Connected(),
		LagMillis: s.store.Lag().Milliseconds(),
		DBs:       make(map[string]DBInfoJSON),
		MountDir:  s.opts.MountDir,
		Lease:     s.opts.LeaseType,
		ProxyURL:  s.opts.ProxyURL,
	}
	if warn := OpenAPIWarning(s.opts.Addr, s.opts.AuthToken,
		s.opts.TLSConfig != nil && s.opts.TLSConfig.ClientAuth == tls.RequireAndVerifyClientCert); warn != "" {
		resp.Warnings = append(resp.Warnings, warn)
	}
	if s.store.IsPrimary() {
		resp.Role = RolePrimary
	}
	resp.Backup = s.backupStatus()
	for name, pos := range s.store.Positions() {
		info := DBInfoJSON{PosJSON: NewPosJSON(pos)}
		if db := s.store.DB(name); db != nil {
			if l, held := db.HaltHolder(); held {
				info.HaltHolder = litefs.FormatNodeID(l.Holder)
			}
		}
		resp.DBs[name] = info
	}
	writeJSON(w, nethttp.StatusOK, resp)
}

// handleHealthz answers GET /healthz: 200 on the primary (unless its
// backup is further behind than BackupMaxLag, or refused), and on a replica
// that is connected and no further behind than MaxLag; 503 with the reason
// otherwise.
func (s *Server) handleHealthz(w nethttp.ResponseWriter, r *nethttp.Request) {
	if reason := s.unhealthy(); reason != "" {
		httpError(w, nethttp.StatusServiceUnavailable, reason)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = fmt.Fprintln(w, "ok")
}

// unhealthy returns why this node should not take traffic, "" if it may.
func (s *Server) unhealthy() string {
	if s.store.IsPrimary() {
		return s.backupUnhealthy()
	}
	host, url := s.primaryInfo()
	if !s.store.Connected() {
		return fmt.Sprintf("replica not connected to primary %s (%s)", host, url)
	}
	lag := s.store.Lag()
	if lag >= litefs.NotSyncedLag {
		return fmt.Sprintf("replica has not caught up with primary %s yet", host)
	}
	if lag > s.opts.MaxLag {
		return fmt.Sprintf("replica lag %s exceeds the limit %s (proxy.max-lag)", lag.Round(time.Millisecond), s.opts.MaxLag)
	}
	return ""
}
