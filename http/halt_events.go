package http

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/litefs/litefs"
)

// EventTypeHalt is the /events type of a HALT lock event.
const EventTypeHalt = "halt"

// HaltEventData is the data of a halt event on /events.
type HaltEventData struct {
	Event   string  `json:"event"`             // acquired, released, expired, dropped, forwarded, refused
	Holder  string  `json:"holder,omitempty"`  // the holder's node id
	Reason  string  `json:"reason,omitempty"`  // refused: busy, not-holder, position, checksum, invalid
	WaitMS  float64 `json:"waitMS,omitempty"`  // acquired: how long the grant waited
	HeldMS  float64 `json:"heldMS,omitempty"`  // released, expired, dropped: how long it was held
	Primary bool    `json:"primary,omitempty"` // reported by the primary (else by the holder's node)
}

// haltMetrics are the HALT counters of GET /metrics.
var haltMetrics struct {
	acquired  atomic.Int64
	released  atomic.Int64
	expired   atomic.Int64
	dropped   atomic.Int64
	forwarded atomic.Int64
	waitNanos atomic.Int64 // total wait of acquisitions
	heldNanos atomic.Int64 // total hold time of ended locks
	mu        sync.Mutex
	refused   map[string]int64 // by reason
}

// haltFeeds fans HALT events out to /events responses.
type haltFeeds struct {
	mu    sync.Mutex
	feeds map[chan litefs.HaltEvent]struct{}
}

// subscribe returns a channel of HALT events; call the returned func when done.
func (f *haltFeeds) subscribe() (chan litefs.HaltEvent, func()) {
	c := make(chan litefs.HaltEvent, 64)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.feeds == nil {
		f.feeds = make(map[chan litefs.HaltEvent]struct{})
	}
	f.feeds[c] = struct{}{}
	return c, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.feeds, c)
	}
}

// onHalt counts e and passes it to every /events response (dropping it
// for one that is too far behind).
func (s *Server) onHalt(e litefs.HaltEvent) {
	countHaltEvent(e)
	s.halts.mu.Lock()
	defer s.halts.mu.Unlock()
	for c := range s.halts.feeds {
		select {
		case c <- e:
		default:
		}
	}
}

// countHaltEvent updates the HALT metrics.
func countHaltEvent(e litefs.HaltEvent) {
	switch e.Type {
	case litefs.HaltAcquired:
		haltMetrics.acquired.Add(1)
		haltMetrics.waitNanos.Add(int64(e.Wait))
	case litefs.HaltReleased:
		haltMetrics.released.Add(1)
	case litefs.HaltExpired:
		haltMetrics.expired.Add(1)
	case litefs.HaltDropped:
		haltMetrics.dropped.Add(1)
	case litefs.HaltForwarded:
		haltMetrics.forwarded.Add(1)
	case litefs.HaltRefused:
		haltMetrics.mu.Lock()
		if haltMetrics.refused == nil {
			haltMetrics.refused = make(map[string]int64)
		}
		haltMetrics.refused[e.Reason]++
		haltMetrics.mu.Unlock()
	}
	if e.Held > 0 {
		haltMetrics.heldNanos.Add(int64(e.Held))
	}
}

// haltEvent converts a store event to its /events form.
func (s *Server) haltEvent(e litefs.HaltEvent) Event {
	d := HaltEventData{Event: string(e.Type), Reason: e.Reason, Primary: s.store.IsPrimary(),
		WaitMS: ms(e.Wait), HeldMS: ms(e.Held)}
	if e.Holder != 0 {
		d.Holder = litefs.FormatNodeID(e.Holder)
	}
	return Event{Type: EventTypeHalt, DB: e.DB, Data: d}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeHaltMetrics writes the HALT metrics.
func writeHaltMetrics(m metricWriter) {
	m.header("litefs_halt_events_total", "counter", "HALT lock events on this node by kind.")
	for _, kv := range []struct {
		k string
		v int64
	}{{"acquired", haltMetrics.acquired.Load()}, {"released", haltMetrics.released.Load()},
		{"expired", haltMetrics.expired.Load()}, {"dropped", haltMetrics.dropped.Load()}} {
		m.sample("litefs_halt_events_total", `event="`+kv.k+`"`, float64(kv.v))
	}
	m.counter("litefs_halt_forwarded_tx_total", "Forwarded transactions applied on this primary.", haltMetrics.forwarded.Load())
	m.header("litefs_halt_wait_seconds_total", "counter", "Total time HALT acquisitions waited.")
	m.sample("litefs_halt_wait_seconds_total", "", time.Duration(haltMetrics.waitNanos.Load()).Seconds())
	m.header("litefs_halt_hold_seconds_total", "counter", "Total time HALT locks were held.")
	m.sample("litefs_halt_hold_seconds_total", "", time.Duration(haltMetrics.heldNanos.Load()).Seconds())
	m.header("litefs_halt_refusals_total", "counter", "Refused HALT requests and forwarded transactions by reason.")
	haltMetrics.mu.Lock()
	defer haltMetrics.mu.Unlock()
	for _, r := range []string{"busy", "not-holder", "position", "checksum", "invalid"} {
		m.sample("litefs_halt_refusals_total", `reason="`+r+`"`, float64(haltMetrics.refused[r]))
	}
}
