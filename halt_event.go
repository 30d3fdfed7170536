package litefs

import (
	"sync"
	"time"
)

// HaltEventType says what happened to a HALT lock.
type HaltEventType string

// The HALT events a store reports to its observers.
const (
	HaltAcquired  HaltEventType = "acquired"  // granted on this primary
	HaltReleased  HaltEventType = "released"  // released by its holder
	HaltExpired   HaltEventType = "expired"   // not renewed within halt.ttl
	HaltDropped   HaltEventType = "dropped"   // the holder's stream dropped or this node stopped being primary
	HaltForwarded HaltEventType = "forwarded" // a forwarded transaction was applied
	HaltRefused   HaltEventType = "refused"   // a HALT request or a forwarded transaction was refused
)

// HaltEvent is one HALT lock event on this node, for metrics and /events.
type HaltEvent struct {
	Type   HaltEventType
	DB     string
	Holder uint64        // the holder's node id (0 when unknown)
	Reason string        // HaltRefused: busy, not-holder, position, checksum, invalid
	Wait   time.Duration // HaltAcquired: how long the grant waited
	Held   time.Duration // released, expired, dropped: how long it was held
}

// haltObservers are the functions told about every HALT event.
type haltObservers struct {
	mu  sync.RWMutex
	fns []func(HaltEvent)
}

// OnHalt registers fn to be called (synchronously, keep it short) for every
// HALT event of this store.
func (s *Store) OnHalt(fn func(HaltEvent)) {
	s.haltObs.mu.Lock()
	defer s.haltObs.mu.Unlock()
	s.haltObs.fns = append(s.haltObs.fns, fn)
}

// haltEvent tells every observer about e.
func (s *Store) haltEvent(e HaltEvent) {
	s.haltObs.mu.RLock()
	defer s.haltObs.mu.RUnlock()
	for _, fn := range s.haltObs.fns {
		fn(e)
	}
}

// haltTTL returns halt.ttl or its default.
func (o *StoreOptions) haltTTL() time.Duration {
	if o.HaltTTL > 0 {
		return o.HaltTTL
	}
	return DefaultHaltTTL
}

// haltAcquireTimeout returns halt.acquire-timeout or its default.
func (o *StoreOptions) haltAcquireTimeout() time.Duration {
	if o.HaltAcquireTimeout > 0 {
		return o.HaltAcquireTimeout
	}
	return DefaultHaltAcquireTimeout
}

// haltRenewInterval returns halt.renew-interval or its default.
func (o *StoreOptions) haltRenewInterval() time.Duration {
	if o.HaltRenewInterval > 0 {
		return o.HaltRenewInterval
	}
	return DefaultHaltRenewInterval
}
