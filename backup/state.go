package backup

import (
	"sort"
	"sync"
	"time"

	"github.com/superfly/ltx"
)

// dbState is what the replicator knows about one database's backup.
type dbState struct {
	mu           sync.Mutex
	created      time.Time
	known        bool    // bucket head read since this node became primary
	bucket       ltx.Pos // newest position in the bucket
	lastSnapshot time.Time
	lastCompact  time.Time
	snapshotTXID ltx.TXID  // TXID of the newest snapshot this node uploaded
	lastSync     time.Time // last successful sync
	refusal      string
	lastErr      string
	failures     int // consecutive failures
	retry        time.Time
	errors       int64 // all failed syncs
	puts         int64 // objects uploaded
	deletes      int64 // objects removed by retention
	objects      int64 // LTX objects in the bucket (listed, then counted)
}

func (st *dbState) isKnown() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.known
}

func (st *dbState) bucketPos() ltx.Pos {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.bucket
}

func (st *dbState) setBucket(pos ltx.Pos, snapshot time.Time, objects int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.known, st.bucket, st.lastSnapshot, st.objects = true, pos, snapshot, int64(objects)
}

// uploaded records one PUT that moved the bucket to pos.
func (st *dbState) uploaded(pos ltx.Pos, snapshot bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.bucket = pos
	st.puts++
	st.objects++
	if snapshot {
		st.lastSnapshot, st.snapshotTXID = time.Now(), pos.TXID
	}
}

// compacted records a compaction pass that uploaded n files.
func (st *dbState) compacted(n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.lastCompact = time.Now()
	st.puts += int64(n)
	st.objects += int64(n)
}

func (st *dbState) deleted(n int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.deletes += int64(n)
	st.objects -= int64(n)
}

func (st *dbState) refused() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.refusal
}

func (st *dbState) refuse(reason string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.refusal = reason
}

func (st *dbState) retryAt() time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.retry
}

func (st *dbState) succeeded() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.failures, st.lastErr, st.retry, st.lastSync = 0, "", time.Time{}, time.Now()
}

// failed records a failed sync and returns the backoff before the next
// try: 1s doubling up to max.
func (st *dbState) failed(err error, max time.Duration) time.Duration {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.failures++
	st.errors++
	st.lastErr = err.Error()
	st.known = false // re-read the head: a PUT may have landed
	wait := time.Second << min(st.failures-1, 10)
	if wait > max {
		wait = max
	}
	st.retry = time.Now().Add(wait)
	return wait
}

// DBStatus is the backup state of one database, for metrics and
// `litefs status`.
type DBStatus struct {
	Name        string   `json:"name"`
	BucketTXID  ltx.TXID `json:"bucket_txid"`
	LocalTXID   ltx.TXID `json:"local_txid"`
	LagTXIDs    uint64   `json:"lag_txids"`
	LastSync    string   `json:"last_sync,omitempty"`
	LastError   string   `json:"last_error,omitempty"`
	Refused     string   `json:"refused,omitempty"`
	Errors      int64    `json:"errors"`
	Uploads     int64    `json:"uploads"`
	Deletes     int64    `json:"deletes"`
	Objects     int64    `json:"objects"`     // LTX objects of the database in the bucket
	LagDuration float64  `json:"lag_seconds"` // since the last successful sync, when behind
}

// Status returns the backup state of every database the replicator has
// seen, sorted by name.
func (r *Replicator) Status() []DBStatus {
	r.mu.Lock()
	names := make([]string, 0, len(r.dbs))
	for name := range r.dbs {
		names = append(names, name)
	}
	r.mu.Unlock()
	sort.Strings(names)
	out := make([]DBStatus, 0, len(names))
	positions := r.store.Positions()
	for _, name := range names {
		st := r.state(name)
		st.mu.Lock()
		s := DBStatus{Name: name, BucketTXID: st.bucket.TXID, LocalTXID: positions[name].TXID,
			LastError: st.lastErr, Refused: st.refusal, Errors: st.errors, Uploads: st.puts, Deletes: st.deletes, Objects: st.objects}
		if !st.lastSync.IsZero() {
			s.LastSync = st.lastSync.UTC().Format(time.RFC3339Nano)
		}
		if s.LocalTXID > s.BucketTXID {
			s.LagTXIDs = uint64(s.LocalTXID - s.BucketTXID)
			since := st.created
			if st.lastSync.After(since) {
				since = st.lastSync
			}
			s.LagDuration = time.Since(since).Seconds()
		}
		st.mu.Unlock()
		out = append(out, s)
	}
	return out
}
