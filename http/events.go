package http

import (
	"context"
	"encoding/json"
	"fmt"
	nethttp "net/http"
	"time"

	"github.com/litefs/litefs"
	"github.com/superfly/ltx"
)

// Event types of GET /events, as github.com/superfly/litefs-go reads them.
const (
	EventTypeInit          = "init"
	EventTypeTx            = "tx"
	EventTypePrimaryChange = "primaryChange"
)

// (EventTypeHalt and its data are in halt_events.go.)

// Event is one line of GET /events.
type Event struct {
	Type string `json:"type"`
	DB   string `json:"db,omitempty"`
	Data any    `json:"data,omitempty"`
}

// RoleEventData is the data of init and primaryChange events: whether this
// node is primary, and the primary's hostname.
type RoleEventData struct {
	IsPrimary bool   `json:"isPrimary"`
	Hostname  string `json:"hostname,omitempty"`
}

// TxEventData is the data of a tx event: one committed transaction.
type TxEventData struct {
	TXID              string    `json:"txID"`
	PostApplyChecksum string    `json:"postApplyChecksum"`
	PageSize          uint32    `json:"pageSize"`
	Commit            uint32    `json:"commit"`
	Timestamp         time.Time `json:"timestamp"`
}

// maxTxEventsPerDB bounds the tx events one wake-up emits for one database;
// beyond it only the newest position is reported.
const maxTxEventsPerDB = 1000

// handleEvents answers GET /events with newline-delimited JSON events: init,
// then tx for every transaction and primaryChange when the role changes.
func (s *Server) handleEvents(w nethttp.ResponseWriter, r *nethttp.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	sub := s.store.Subscribe()
	defer sub.Close()
	metrics.eventSubscriptions.Add(1)
	defer metrics.eventSubscriptions.Add(-1)

	rc := nethttp.NewResponseController(w)
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(nethttp.StatusOK)
	enc := json.NewEncoder(&deadlineWriter{w: w, rc: rc, timeout: s.opts.WriteTimeout})
	if err := s.followEvents(ctx, enc, rc, sub); err != nil && ctx.Err() == nil {
		s.log.Debug("event subscriber disconnected", "error", err, "remote", r.RemoteAddr)
	}
}

// followEvents writes events until ctx ends or a write fails.
func (s *Server) followEvents(ctx context.Context, enc *json.Encoder, rc *nethttp.ResponseController, sub *litefs.Subscription) error {
	role := s.roleEventData()
	if err := enc.Encode(Event{Type: EventTypeInit, Data: role}); err != nil {
		return err
	}
	if err := rc.Flush(); err != nil {
		return err
	}
	last := s.store.Positions()
	halts, unsubscribe := s.halts.subscribe()
	defer unsubscribe()
	published, unpublish := s.published.subscribe()
	defer unpublish()
	tick := time.NewTicker(time.Second) // role changes do not signal subscriptions
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.C:
		case <-tick.C:
		case e := <-halts:
			if err := enc.Encode(s.haltEvent(e)); err != nil {
				return err
			}
		case e := <-published:
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		if cur := s.roleEventData(); cur != role {
			role = cur
			if err := enc.Encode(Event{Type: EventTypePrimaryChange, Data: cur}); err != nil {
				return err
			}
		}
		if err := s.writeTxEvents(enc, last); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil {
			return err
		}
	}
}

// roleEventData returns this node's role and the primary's hostname.
func (s *Server) roleEventData() RoleEventData {
	host, _ := s.primaryInfo()
	return RoleEventData{IsPrimary: s.store.IsPrimary(), Hostname: host}
}

// writeTxEvents writes a tx event for every transaction committed since
// last, and updates last.
func (s *Server) writeTxEvents(enc *json.Encoder, last map[string]ltx.Pos) error {
	for _, db := range s.store.DBs() {
		name, pos := db.Name(), db.Pos()
		prev, ok := last[name]
		if ok && prev == pos || pos.TXID == 0 {
			last[name] = pos
			continue
		}
		from := prev.TXID + 1
		if !ok || pos.TXID < prev.TXID || pos.TXID-prev.TXID > maxTxEventsPerDB {
			from = pos.TXID // a new, replaced or far-moved database: report where it is
		}
		for txid := from; txid <= pos.TXID; {
			data, next := txEventData(db, txid, pos)
			if err := enc.Encode(Event{Type: EventTypeTx, DB: name, Data: data}); err != nil {
				return fmt.Errorf("write tx event: %w", err)
			}
			txid = next
		}
		last[name] = pos
	}
	for name := range last {
		if s.store.DB(name) == nil {
			delete(last, name)
		}
	}
	return nil
}

// txEventData describes transaction txid of db from its LTX file, or from
// the database's current state if the file is gone. It returns the next
// TXID to describe.
func txEventData(db *litefs.DB, txid ltx.TXID, cur ltx.Pos) (TxEventData, ltx.TXID) {
	if f, err := db.OpenLTX(txid); err == nil {
		hdr, trailer, _, err := readLTXEnds(f, f.Size())
		_ = f.Close()
		if err == nil && hdr.MaxTXID >= txid && hdr.MaxTXID <= cur.TXID {
			return TxEventData{
				TXID:              hdr.MaxTXID.String(),
				PostApplyChecksum: trailer.PostApplyChecksum.String(),
				PageSize:          hdr.PageSize,
				Commit:            hdr.Commit,
				Timestamp:         time.UnixMilli(hdr.Timestamp).UTC(),
			}, hdr.MaxTXID + 1
		}
	}
	return TxEventData{
		TXID:              cur.TXID.String(),
		PostApplyChecksum: cur.PostApplyChecksum.String(),
		PageSize:          db.PageSize(),
		Timestamp:         time.Now().UTC(),
	}, cur.TXID + 1
}
