package consul

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/litefs/litefs"
)

// Leaser is litefs.Leaser on a Consul session lock.
//
// Key layout (prefix from the URL's path, key from Config.Key):
//
//	PREFIX/KEY             the lock; its value is the holder's LeaseInfo (JSON)
//	PREFIX/KEY-cluster-id  the cluster id, written once by the first node
type Leaser struct {
	client     *api.Client
	transport  *http.Transport
	cfg        Config
	key        string
	clusterKey string
	log        *slog.Logger
}

var _ litefs.Leaser = (*Leaser)(nil)

// watchWait bounds one blocking query; Watch repeats it until a change.
const watchWait = time.Minute

// retryDelay is the pause between attempts while the key is free but
// locked out by lock-delay, and after a failed blocking query.
const retryDelay = 50 * time.Millisecond

// New returns a Leaser for cfg. It does not contact Consul.
func New(cfg Config) (*Leaser, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ep, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	key, err := leaseKey(ep.prefix, cfg.Key)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 8 // blocking queries each hold a connection
	client, err := api.NewClient(&api.Config{Address: ep.address, Scheme: ep.scheme, Token: ep.token, Transport: tr})
	if err != nil {
		return nil, fmt.Errorf("consul client for %s: %w", redact(cfg.URL), err)
	}
	return &Leaser{
		client: client, transport: tr, cfg: cfg,
		key: key, clusterKey: key + ClusterIDSuffix,
		log: cfg.Logger.With("component", "consul", "key", key),
	}, nil
}

// Key returns the KV key the candidates lock.
func (l *Leaser) Key() string { return l.key }

// ClusterIDKey returns the KV key that stores the cluster id.
func (l *Leaser) ClusterIDKey() string { return l.clusterKey }

// Close releases idle connections. It does not release a held Lease.
func (l *Leaser) Close() error {
	l.transport.CloseIdleConnections()
	return nil
}

// State returns the lease state now.
func (l *Leaser) State(ctx context.Context) (litefs.LeaseState, error) {
	pair, meta, err := l.client.KV().Get(l.key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return litefs.LeaseState{}, fmt.Errorf("read lease key %s: %w", l.key, err)
	}
	return stateOf(l.key, pair, meta.LastIndex)
}

// Watch blocks until the lease state differs from prev and returns it. It
// uses Consul blocking queries on the key, so a change is seen as soon as
// the servers apply it; wake-ups that change nothing visible are absorbed.
func (l *Leaser) Watch(ctx context.Context, prev litefs.LeaseState) (litefs.LeaseState, error) {
	index := prev.Index
	for {
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: watchWait}).WithContext(ctx)
		pair, meta, err := l.client.KV().Get(l.key, q)
		if err != nil {
			return litefs.LeaseState{}, fmt.Errorf("watch lease key %s: %w", l.key, err)
		}
		st, err := stateOf(l.key, pair, meta.LastIndex)
		if err != nil {
			return st, fmt.Errorf("watch lease: %w", err)
		}
		if prev.Index == 0 || !sameState(st, prev) {
			return st, nil
		}
		// Consul's index may go backwards (snapshot restore): start over.
		index = meta.LastIndex
		if index < prev.Index {
			index = 0
		}
	}
}

// ClusterID returns the stored cluster id, "" if none is stored.
func (l *Leaser) ClusterID(ctx context.Context) (string, error) {
	pair, _, err := l.client.KV().Get(l.clusterKey, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("read cluster id key %s: %w", l.clusterKey, err)
	}
	if pair == nil {
		return "", nil
	}
	return string(pair.Value), nil
}

// SetClusterID stores id if no cluster id is stored (check-and-set, so of
// two first nodes only one wins) and fails with litefs.ErrClusterMismatch,
// naming both ids, if another one is stored.
func (l *Leaser) SetClusterID(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("set cluster id: the id is empty")
	}
	pair := &api.KVPair{Key: l.clusterKey, Value: []byte(id)} // ModifyIndex 0: create only
	ok, _, err := l.client.KV().CAS(pair, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("store cluster id at %s: %w", l.clusterKey, err)
	}
	if ok {
		l.log.Info("stored cluster id", "cluster_id", id)
		return nil
	}
	stored, err := l.ClusterID(ctx)
	if err != nil {
		return err
	}
	if stored != id {
		return fmt.Errorf("%w: this node belongs to cluster %s, Consul key %s names cluster %s", litefs.ErrClusterMismatch, id, l.clusterKey, stored)
	}
	return nil
}

// Acquire races for the lock on the key. See litefs.Leaser.
func (l *Leaser) Acquire(ctx context.Context, info litefs.LeaseInfo) (litefs.Lease, error) {
	if info.ClusterID == "" {
		return nil, fmt.Errorf("acquire lease %s: info has no cluster id: a primary must have one (Store.EnsureClusterID)", l.key)
	}
	if info.AdvertiseURL == "" {
		return nil, fmt.Errorf("acquire lease %s: info has no advertise URL: replicas could not reach this node", l.key)
	}
	if err := l.SetClusterID(ctx, info.ClusterID); err != nil {
		return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
	}
	pair, _, err := l.client.KV().Get(l.key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("acquire lease: read key %s: %w", l.key, err)
	}
	if err := l.mayLock(pair, info); err != nil {
		return nil, err
	}
	s, err := openSession(ctx, l.client, l.cfg, info)
	if err != nil {
		return nil, fmt.Errorf("acquire lease %s: %w", l.key, err)
	}
	lease, err := l.lock(ctx, s, info, pair)
	if err != nil {
		if cerr := s.close(); cerr != nil {
			l.log.Warn("cleaning up after a failed acquire", "error", cerr)
		}
		return nil, err
	}
	return lease, nil
}

// mayLock checks that the key, as last read, is free and that info's
// positions are not behind the positions the last holder published.
func (l *Leaser) mayLock(pair *api.KVPair, info litefs.LeaseInfo) error {
	st, err := stateOf(l.key, pair, 0)
	if err != nil {
		return fmt.Errorf("acquire lease: %w", err)
	}
	if st.Held {
		return fmt.Errorf("acquire lease %s: %w: %s", l.key, litefs.ErrLeaseHeld, st.Info)
	}
	if err := litefs.CheckPromotion(info.Positions, st.Info.Positions); err != nil {
		return fmt.Errorf("acquire lease %s: last primary %s: %w", l.key, st.Info, err)
	}
	return nil
}

// lock takes the key for session s. Each attempt is a transaction that
// locks the key only if it is unchanged since it was checked by mayLock, so
// a newer release (with newer positions) is never overlooked. While the key
// is free but refused (lock-delay), the session is kept alive and the
// attempt repeated until ctx is done.
func (l *Leaser) lock(ctx context.Context, s *session, info litefs.LeaseInfo, pair *api.KVPair) (*Lease, error) {
	value, err := encodeInfo(info)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		ok, err := l.tryLock(ctx, s, value, pair)
		if err != nil {
			return nil, err
		}
		if ok {
			l.log.Info("acquired lease", "session", s.id, "attempts", attempt)
			return startLease(l, s, info), nil
		}
		if pair, _, err = l.client.KV().Get(l.key, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("acquire lease: read key %s: %w", l.key, err)
		}
		if err := l.mayLock(pair, info); err != nil {
			return nil, err
		}
		if time.Since(s.alive) >= l.cfg.RenewInterval {
			if err := s.keepAlive(ctx); err != nil {
				return nil, fmt.Errorf("acquire lease %s: keep session alive during lock-delay: %w", l.key, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("acquire lease %s: key is free but still refused after %d attempts (lock-delay %s): %w", l.key, attempt, l.cfg.LockDelay, ctx.Err())
		case <-time.After(retryDelay):
		}
	}
}

// tryLock makes one locking transaction. It returns false, nil when Consul
// refused it (key changed, held, or in lock-delay).
func (l *Leaser) tryLock(ctx context.Context, s *session, value []byte, pair *api.KVPair) (bool, error) {
	check := &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: l.key}
	if pair != nil {
		check = &api.KVTxnOp{Verb: api.KVCheckIndex, Key: l.key, Index: pair.ModifyIndex}
	}
	ops := api.TxnOps{
		{KV: check},
		{KV: &api.KVTxnOp{Verb: api.KVLock, Key: l.key, Value: value, Session: s.id}},
	}
	ok, resp, _, err := l.client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("acquire lease: lock key %s: %w", l.key, err)
	}
	if !ok && resp != nil {
		for _, e := range resp.Errors {
			l.log.Debug("lock attempt refused", "op", e.OpIndex, "reason", e.What)
		}
	}
	return ok, nil
}
