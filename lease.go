package litefs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/superfly/ltx"
)

// Lease errors. Callers compare with errors.Is; the wrapped message names
// the holder, the positions or the cause.
var (
	// ErrLeaseHeld is returned by Leaser.Acquire when another node holds the
	// lease.
	ErrLeaseHeld = errors.New("lease is held by another node")
	// ErrLeaseLost is Lease.Err after the lease was lost: renewal failed
	// for too long, the session was invalidated, or another node took the key.
	ErrLeaseLost = errors.New("lease lost")
	// ErrLeaseReleased is Lease.Err after Lease.Release.
	ErrLeaseReleased = errors.New("lease released")
	// ErrStaleCandidate is returned by Leaser.Acquire when the candidate's
	// databases are behind (or diverged from) the positions the last
	// primary published: promoting it would roll the cluster back.
	ErrStaleCandidate = errors.New("candidate is behind the last primary")
)

// LeaseInfo is what the lease holder publishes for the other nodes: who it
// is, which cluster it belongs to and how far its databases are.
//
// The positions serve safe promotion (SPEC section 9): a candidate whose
// databases are behind the positions the last primary published must not
// take over. The holder publishes them when it acquires, on Lease.Update and
// on Lease.Release.
type LeaseInfo struct {
	PrimaryInfo                    // Hostname and AdvertiseURL of the holder
	ClusterID   string             // the holder's cluster id ("" before it has one)
	Positions   map[string]ltx.Pos // database name -> position
	// HandoffTo, in the value a primary leaves on a graceful release, is
	// the advertise URL of the node it handed the role to. Other
	// candidates let that node take the lease first (see docs/lifecycle.md).
	HandoffTo string
}

// Equal reports whether i and o publish the same thing.
func (i LeaseInfo) Equal(o LeaseInfo) bool {
	return i.PrimaryInfo == o.PrimaryInfo && i.ClusterID == o.ClusterID && i.HandoffTo == o.HandoffTo &&
		maps.Equal(i.Positions, o.Positions)
}

// String names the holder for logs and errors.
func (i LeaseInfo) String() string {
	if i.Hostname == "" {
		return i.AdvertiseURL
	}
	return fmt.Sprintf("%s (%s)", i.Hostname, i.AdvertiseURL)
}

// LeaseState is the lease as any node sees it.
type LeaseState struct {
	// Held says whether a node holds the lease now.
	Held bool
	// Info is the holder's published info when Held; otherwise the last
	// holder's (its final positions after a clean release), zero if the
	// lease was never held.
	Info LeaseInfo
	// Index is an opaque version of the state, passed back to Leaser.Watch.
	Index uint64
}

// Primary returns the primary a replica should follow, nil if none holds
// the lease.
func (s LeaseState) Primary() *PrimaryInfo {
	if !s.Held {
		return nil
	}
	p := s.Info.PrimaryInfo
	return &p
}

// Leaser is how a node learns of and competes for the primary role. Each
// implementation (static, consul) keeps these rules:
//
//   - at most one Lease is live at any time across the cluster: a node
//     whose Lease has not reported loss may accept writes;
//   - a holder learns of loss (Lease.Done) no later than Lease.Deadline,
//     which is before any other node can be granted the lease;
//   - Watch is a blocking call (no polling): it returns as soon as the
//     holder or its published info changes.
type Leaser interface {
	// Acquire tries to take the lease and publish info. It returns an error
	// wrapping ErrLeaseHeld at once if another node holds it, and
	// ErrStaleCandidate if info.Positions are behind the positions the last
	// holder published. While nobody holds the lease but it cannot be taken
	// yet (Consul's lock-delay after a holder failed), it keeps trying until
	// ctx is done.
	Acquire(ctx context.Context, info LeaseInfo) (Lease, error)

	// State returns the lease state now.
	State(ctx context.Context) (LeaseState, error)

	// Watch blocks until the lease state differs from prev (another holder,
	// no holder, or new published info) and returns the new state. Pass the
	// zero LeaseState to get the current state without waiting.
	Watch(ctx context.Context, prev LeaseState) (LeaseState, error)

	// ClusterID returns the cluster id stored with the lease, "" if none
	// was stored yet.
	ClusterID(ctx context.Context) (string, error)

	// SetClusterID stores id as the cluster id if none is stored yet. It
	// fails with an error wrapping ErrClusterMismatch, naming both ids, if a
	// different one is stored: the node belongs to another cluster.
	SetClusterID(ctx context.Context, id string) error

	// Close releases the leaser's resources. It does not release a held
	// Lease: call Lease.Release first.
	Close() error
}

// Lease is the primary role held by this node. It is renewed in the
// background from Acquire until Release or loss; the holder only has to
// watch Done (or check Deadline before each write).
type Lease interface {
	// Info returns the info the lease last published.
	Info() LeaseInfo

	// Update publishes new info (typically newer positions) while the lease
	// is held. It fails, and the lease is lost, if this node no longer
	// holds it.
	Update(ctx context.Context, info LeaseInfo) error

	// Deadline is the time until which no other node can be granted the
	// lease, as far as this node knows (last successful renewal plus the
	// renewal window, minus a safety margin). It moves forward with each
	// renewal. A holder must not accept a write after it.
	Deadline() time.Time

	// Done is closed when the lease is lost or released.
	Done() <-chan struct{}

	// Err is nil while the lease is held, then an error wrapping
	// ErrLeaseLost (with the cause) or ErrLeaseReleased.
	Err() error

	// Release gives the lease up at once, publishing info (the final
	// positions), so another candidate can take it without waiting for a
	// TTL or lock-delay. Releasing a lost or released lease returns its Err.
	Release(ctx context.Context, info LeaseInfo) error
}

// CheckPromotion returns nil if a candidate with positions mine may take
// over from a primary that last published positions last. It fails with an
// error wrapping ErrStaleCandidate, naming each database and both
// positions, when for any database of last the candidate has no copy, an
// older TXID, or the same TXID with another checksum (diverged).
// Databases only the candidate has do not matter.
func CheckPromotion(mine, last map[string]ltx.Pos) error {
	var problems []string
	for _, name := range slices.Sorted(maps.Keys(last)) {
		want := last[name]
		have, ok := mine[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: missing here, primary at %s", name, want))
		case have.TXID < want.TXID:
			problems = append(problems, fmt.Sprintf("%s: here at %s, primary at %s", name, have, want))
		case have.TXID == want.TXID && have.PostApplyChecksum != want.PostApplyChecksum:
			problems = append(problems, fmt.Sprintf("%s: diverged, here %s, primary %s", name, have, want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrStaleCandidate, strings.Join(problems, "; "))
	}
	return nil
}
