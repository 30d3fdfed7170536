package http

import (
	"fmt"
	"time"
)

// BackupStatus is the backup state of one database (the backup package's
// DBStatus, copied by the daemon so this package does not import it),
// shown by GET /info, GET /metrics and, with BackupMaxLag, GET /healthz.
type BackupStatus struct {
	Name       string  `json:"name"`
	BucketTXID uint64  `json:"bucketTXID"` // newest TXID in the bucket
	LocalTXID  uint64  `json:"localTXID"`  // this node's TXID
	LagSeconds float64 `json:"lagSeconds"` // how long the bucket has been behind (0 when up to date)
	Errors     int64   `json:"errors"`     // failed syncs so far
	Uploads    int64   `json:"uploads"`    // objects uploaded
	Deletes    int64   `json:"deletes"`    // objects removed by retention
	Objects    int64   `json:"objects"`    // LTX objects of the database in the bucket
	LastError  string  `json:"lastError,omitempty"`
	Refused    string  `json:"refused,omitempty"` // why the bucket is left alone (ahead or diverged)
}

// backupStatus returns the backup state, nil without backup.
func (s *Server) backupStatus() []BackupStatus {
	if s.opts.BackupStatus == nil {
		return nil
	}
	return s.opts.BackupStatus()
}

// backupUnhealthy returns why the primary's backup is too far behind
// (BackupMaxLag, backup.max-lag), "" if it is not or the check is off.
func (s *Server) backupUnhealthy() string {
	if s.opts.BackupMaxLag <= 0 {
		return ""
	}
	for _, b := range s.backupStatus() {
		if b.Refused != "" {
			return fmt.Sprintf("backup of %s is refused: %s", b.Name, b.Refused)
		}
		lag := time.Duration(b.LagSeconds * float64(time.Second))
		if lag > s.opts.BackupMaxLag {
			return fmt.Sprintf("backup of %s is %s behind (txid %d of %d), over backup.max-lag %s",
				b.Name, lag.Round(time.Millisecond), b.BucketTXID, b.LocalTXID, s.opts.BackupMaxLag)
		}
	}
	return ""
}

// writeBackupMetrics writes the backup gauges and counters per database.
func (s *Server) writeBackupMetrics(m metricWriter) {
	all := s.backupStatus()
	if all == nil {
		return
	}
	type metric struct {
		name, typ, help string
		value           func(b BackupStatus) float64
	}
	for _, mt := range []metric{
		{"litefs_backup_lag_txids", "gauge", "Transactions on this primary not yet in the backup.", func(b BackupStatus) float64 { return float64(b.LocalTXID - min(b.LocalTXID, b.BucketTXID)) }},
		{"litefs_backup_lag_seconds", "gauge", "How long the backup has been behind this primary.", func(b BackupStatus) float64 { return b.LagSeconds }},
		{"litefs_backup_txid", "gauge", "Newest transaction id in the backup.", func(b BackupStatus) float64 { return float64(b.BucketTXID) }},
		{"litefs_backup_errors_total", "counter", "Failed backup syncs.", func(b BackupStatus) float64 { return float64(b.Errors) }},
		{"litefs_backup_uploads_total", "counter", "Objects uploaded to the backup.", func(b BackupStatus) float64 { return float64(b.Uploads) }},
		{"litefs_backup_deletes_total", "counter", "Objects removed from the backup by retention.", func(b BackupStatus) float64 { return float64(b.Deletes) }},
		{"litefs_backup_objects", "gauge", "LTX objects of the database in the bucket (all levels).", func(b BackupStatus) float64 { return float64(b.Objects) }},
		{"litefs_backup_refused", "gauge", "1 if the bucket is ahead or diverged and left alone.", func(b BackupStatus) float64 { return boolFloat(b.Refused != "") }},
	} {
		m.header(mt.name, mt.typ, mt.help)
		for _, b := range all {
			m.sample(mt.name, `db="`+escapeLabel(b.Name)+`"`, mt.value(b))
		}
	}
}
