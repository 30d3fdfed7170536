package litefs

import "sync"

// Subscription receives a signal whenever any database of the store commits,
// is created, or is deleted. Signals coalesce: after a receive, the
// subscriber reads the current state (positions) and never misses a change.
type Subscription struct {
	C     <-chan struct{}
	c     chan struct{}
	store *Store
}

// subscribers is the set of open subscriptions of a store.
type subscribers struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

// Subscribe returns a new subscription; Close it when done.
func (s *Store) Subscribe() *Subscription {
	c := make(chan struct{}, 1)
	sub := &Subscription{C: c, c: c, store: s}
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	if s.subs.subs == nil {
		s.subs.subs = make(map[*Subscription]struct{})
	}
	s.subs.subs[sub] = struct{}{}
	return sub
}

// Close ends the subscription.
func (sub *Subscription) Close() {
	sub.store.subs.mu.Lock()
	defer sub.store.subs.mu.Unlock()
	delete(sub.store.subs.subs, sub)
}

// SubscriberN returns the number of open subscriptions.
func (s *Store) SubscriberN() int {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	return len(s.subs.subs)
}

// notify signals every subscriber without blocking.
func (s *Store) notify() {
	s.subs.mu.Lock()
	defer s.subs.mu.Unlock()
	for sub := range s.subs.subs {
		select {
		case sub.c <- struct{}{}:
		default:
		}
	}
}
