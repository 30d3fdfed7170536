package litefs

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/superfly/ltx"
)

// PrimaryInfo names the primary a replica follows.
type PrimaryInfo struct {
	Hostname     string
	AdvertiseURL string
}

// roleState is this node's identity and role.
type roleState struct {
	mu        sync.Mutex
	nodeID    uint64
	clusterID string
	primary   *PrimaryInfo // nil: this node is the primary
	replica   atomic.Bool  // primary != nil, readable without mu
	lag       time.Duration
	synced    bool // a replica has completed its first catch-up
	connected bool // a replica's stream to the primary is up
	reached   bool // a replica's stream has been up at least once since start
}

// NotSyncedLag is the lag reported before a replica's first catch-up.
const NotSyncedLag = time.Duration(2147483647) * time.Millisecond

// loadIdentity reads or creates the node id (<data>/id) and reads the
// cluster id (<data>/clusterid), if any.
func (s *Store) loadIdentity() error {
	idPath := filepath.Join(s.opts.Dir, "id")
	b, err := os.ReadFile(idPath)
	switch {
	case err == nil:
		id, perr := parseNodeID(strings.TrimSpace(string(b)))
		if perr != nil {
			return fmt.Errorf("read node id from %s: %w", idPath, perr)
		}
		s.role.nodeID = id
	case os.IsNotExist(err):
		var buf [8]byte
		if _, err := rand.Read(buf[:]); err != nil {
			return fmt.Errorf("generate node id: %w", err)
		}
		s.role.nodeID = binary.BigEndian.Uint64(buf[:]) | 1
		if err := writeFileAtomic(s.opts.Dir, "id", []byte(FormatNodeID(s.role.nodeID)+"\n"), !s.opts.SkipSync); err != nil {
			return fmt.Errorf("write node id: %w", err)
		}
	default:
		return fmt.Errorf("read node id: %w", err)
	}
	b, err = os.ReadFile(filepath.Join(s.opts.Dir, "clusterid"))
	if err == nil {
		s.role.clusterID = strings.TrimSpace(string(b))
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("read cluster id: %w", err)
	}
	return nil
}

// FormatNodeID formats a node id as 16 lower-case hex digits.
func FormatNodeID(id uint64) string { return fmt.Sprintf("%016x", id) }

func parseNodeID(s string) (uint64, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("invalid node id %q: want 16 hex digits", s)
	}
	return binary.BigEndian.Uint64(b), nil
}

// NodeID returns this node's id.
func (s *Store) NodeID() uint64 {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	return s.role.nodeID
}

// ClusterID returns the cluster id, "" before it is known.
func (s *Store) ClusterID() string {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	return s.role.clusterID
}

// EnsureClusterID creates a cluster id if none exists (the primary does).
func (s *Store) EnsureClusterID() (string, error) {
	if id := s.ClusterID(); id != "" {
		return id, nil
	}
	var buf [12]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", fmt.Errorf("generate cluster id: %w", err)
	}
	id := "LFSC" + strings.ToUpper(hex.EncodeToString(buf[:]))
	return id, s.SetClusterID(id)
}

// SetClusterID adopts a cluster id (a replica adopts the primary's on first
// contact). It fails if a different id is already set: the node belongs to
// another cluster.
func (s *Store) SetClusterID(id string) error {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	if s.role.clusterID == id {
		return nil
	}
	if s.role.clusterID != "" {
		return fmt.Errorf("%w: this node belongs to cluster %s, the peer to %s", ErrClusterMismatch, s.role.clusterID, id)
	}
	if err := writeFileAtomic(s.opts.Dir, "clusterid", []byte(id+"\n"), !s.opts.SkipSync); err != nil {
		return fmt.Errorf("write cluster id: %w", err)
	}
	s.role.clusterID = id
	return nil
}

// IsPrimary reports whether this node is the primary.
func (s *Store) IsPrimary() bool {
	// Read on every database and WAL write: an atomic, not the role mutex.
	return !s.role.replica.Load()
}

// Primary returns the primary this replica follows, or nil on the primary.
func (s *Store) Primary() *PrimaryInfo {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	if s.role.primary == nil {
		return nil
	}
	p := *s.role.primary
	return &p
}

// ReachedPrimary returns the primary a replica knows and has reached: nil
// on the primary, on a replica whose stream has never been up since the
// daemon started (a primary named in the configuration may not exist, or
// may refuse it), and when the primary's hostname is unknown. Once reached,
// a later primary named by the lease counts at once (a failover keeps
// .primary pointing somewhere rather than making a replica look primary).
func (s *Store) ReachedPrimary() *PrimaryInfo {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	if s.role.primary == nil || !s.role.reached || s.role.primary.Hostname == "" {
		return nil
	}
	p := *s.role.primary
	return &p
}

// SetReplica makes this node a replica of p (nil makes it the primary).
// On a replica every database is read-only except through the store's own
// apply path.
func (s *Store) SetReplica(p *PrimaryInfo) {
	s.role.mu.Lock()
	prev := s.role.primary
	if p == nil {
		s.role.primary = nil
		s.role.replica.Store(false)
		s.role.lag, s.role.synced = 0, true
	} else {
		cp := *p
		s.role.primary = &cp
		s.role.replica.Store(true)
		if prev == nil || *prev != cp {
			s.role.synced = false // caught up with the new primary only at its Ready
		}
	}
	s.role.mu.Unlock()

	// SPEC 8.3: HALT locks do not survive a change of primary.
	switch {
	case prev == nil && p != nil:
		s.ReleaseAllHalts() // this node stopped being primary
	case prev != nil && (p == nil || *p != *prev):
		s.VoidHalts(fmt.Errorf("%w: the primary changed", ErrHaltVoid))
	}
}

// SetConnected records whether a replica's stream is up, and its lag once
// it has caught up (synced).
func (s *Store) SetConnected(connected, synced bool, lag time.Duration) {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	s.role.connected = connected
	s.role.reached = s.role.reached || connected
	if synced {
		s.role.synced, s.role.lag = true, lag
	}
}

// Connected reports whether a replica's stream to the primary is up (always
// true on the primary).
func (s *Store) Connected() bool {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	return s.role.primary == nil || s.role.connected
}

// Lag returns how far this node is behind the primary: 0 on the primary,
// NotSyncedLag before a replica's first catch-up.
func (s *Store) Lag() time.Duration {
	s.role.mu.Lock()
	defer s.role.mu.Unlock()
	switch {
	case s.role.primary == nil:
		return 0
	case !s.role.synced:
		return NotSyncedLag
	}
	return s.role.lag
}

// Positions returns the position of every database.
func (s *Store) Positions() map[string]ltx.Pos {
	m := make(map[string]ltx.Pos)
	for _, db := range s.DBs() {
		m[db.Name()] = db.Pos()
	}
	return m
}
