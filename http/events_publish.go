package http

import "sync"

// eventFeeds fans events published by other parts of the daemon (the HTTP
// proxy) out to /events responses.
type eventFeeds struct {
	mu    sync.Mutex
	feeds map[chan Event]struct{}
}

// subscribe returns a channel of published events; call the returned func
// when done.
func (f *eventFeeds) subscribe() (chan Event, func()) {
	c := make(chan Event, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.feeds == nil {
		f.feeds = make(map[chan Event]struct{})
	}
	f.feeds[c] = struct{}{}
	return c, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.feeds, c)
	}
}

// Publish sends e to every open /events response, dropping it for one that
// is too far behind. Other parts of the daemon (the HTTP proxy) report
// their significant events with it.
func (s *Server) Publish(e Event) {
	s.published.mu.Lock()
	defer s.published.mu.Unlock()
	for c := range s.published.feeds {
		select {
		case c <- e:
		default:
		}
	}
}
