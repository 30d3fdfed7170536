package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/litefs/litefs"
	"github.com/litefs/litefs/consul"
	lhttp "github.com/litefs/litefs/http"
)

// serveConsulNode runs a node with lease.type consul: the HTTP API, the
// lease loop (primary or replica of the holder) and the mount. At shutdown
// the lease loop hands the role off (or releases it) before the API stops,
// because the handoff travels over the replication stream.
func serveConsulNode(ctx context.Context, stop context.CancelFunc, cfg *Config, store *litefs.Store, log *slog.Logger) error {
	leaser, err := consul.New(consul.Config{
		URL: cfg.Lease.Consul.URL, Key: cfg.Lease.Consul.Key,
		TTL: cfg.Lease.Consul.TTL, LockDelay: cfg.Lease.Consul.LockDelay,
		Logger: log.With("lease", "consul"),
	})
	if err != nil {
		return fmt.Errorf("lease.consul: %w", err)
	}
	defer leaser.Close()

	// A replica without a primary until the lease says otherwise.
	store.SetReplica(&litefs.PrimaryInfo{})
	peer := lhttp.NewHaltClient(store, cfg.HTTP.AuthToken, lhttp.NewPeerClient(cfg.clientTLS()))
	store.SetHaltClient(peer)
	node := newLeaseNode(store, leaser, cfg, log)
	node.peer = peer
	srv := lhttp.NewServer(store, lhttp.ServerOptions{
		Addr: cfg.HTTP.Addr, AuthToken: cfg.HTTP.AuthToken, Logger: log,
		Hostname: cfg.Lease.Hostname, AdvertiseURL: cfg.Lease.AdvertiseURL,
		Candidate: cfg.Lease.Candidate, MaxLag: cfg.Proxy.MaxLag, MountDir: cfg.FUSE.Dir,
		LeaseType: cfg.Lease.Type, Promote: node.Promote, Handoff: node.Handoff, TLSConfig: cfg.serverTLS(),
		ProxyURL: proxyAdvertiseURL(cfg), ExtraMetrics: proxyMetrics(cfg),
		BackupStatus: cfg.backupStatus, BackupMaxLag: cfg.Backup.MaxLag,
	})
	node.srv = srv
	if err := srv.Listen(); err != nil {
		return err
	}

	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	spawn := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				stop()
			}
		}()
	}
	spawn(func() error { return srv.Serve(srvCtx) })
	spawn(func() error {
		defer stopSrv() // after the handoff or release at shutdown
		return node.run(ctx)
	})
	if cfg.Lease.Promote && cfg.Lease.Candidate {
		go node.promoteAtStart(ctx)
	}
	spawn(func() error {
		defer stop()
		return serveMount(ctx, stop, cfg, store, srv, log)
	})
	wg.Wait()
	return errors.Join(errs...)
}
