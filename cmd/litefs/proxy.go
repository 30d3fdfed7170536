package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/litefs/litefs"
	lhttp "github.com/litefs/litefs/http"
	"github.com/litefs/litefs/proxy"
)

// proxyEventType is the /events type of the proxy's events.
const proxyEventType = "proxy"

// proxyAdvertiseURL is the URL peers reach this node's proxy at, reported
// by /info as proxyURL: the host of lease.advertise-url and the port of
// proxy.addr ("" without a proxy, and on a node that is no candidate: with
// a static lease its advertise-url names the primary). See docs/proxy.md.
func proxyAdvertiseURL(cfg *Config) string {
	if cfg.Proxy.Addr == "" || !cfg.Lease.Candidate {
		return "" // a node that never becomes primary is never forwarded to
	}
	host, port, err := net.SplitHostPort(cfg.Proxy.Addr)
	if err != nil {
		return ""
	}
	if u, err := url.Parse(cfg.Lease.AdvertiseURL); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// proxyMetrics is ServerOptions.ExtraMetrics: the proxy's metrics when it
// is enabled.
func proxyMetrics(cfg *Config) func(io.Writer) {
	if cfg.Proxy.Addr == "" {
		return nil
	}
	return proxy.WriteMetrics
}

// startProxyWhenReady waits until the node is ready (a replica has caught
// up), then starts the HTTP proxy when proxy.addr is set. It returns once
// the proxy listens, with a function that waits for it to stop after ctx
// ends.
func startProxyWhenReady(ctx context.Context, cfg *Config, store *litefs.Store, srv *lhttp.Server, log *slog.Logger) (wait func(), err error) {
	noop := func() {}
	if cfg.Proxy.Addr == "" {
		return noop, nil
	}
	if err := waitNodeReady(ctx, store); err != nil {
		return noop, err
	}
	px, err := proxy.New(store, proxy.Config{
		Addr: cfg.Proxy.Addr, Target: cfg.Proxy.Target, DB: cfg.Proxy.DB,
		Passthrough: cfg.Proxy.Passthrough, AlwaysForward: cfg.Proxy.AlwaysForward,
		MaxLag: cfg.Proxy.MaxLag, PrimaryRedirectTimeout: cfg.Proxy.PrimaryRedirectTimeout,
		FlyReplay: cfg.Proxy.FlyReplay, RetryFailedReadsOnPrimary: cfg.Proxy.RetryFailedReadsOnPrimary,
		AuthToken: cfg.HTTP.AuthToken, Logger: log, // resolved by loadMountConfig
		PeerTLS: cfg.clientTLS(),
		OnEvent: func(e proxy.Event) { srv.Publish(lhttp.Event{Type: proxyEventType, Data: e}) },
	})
	if err != nil {
		return noop, err
	}
	if err := px.Listen(); err != nil {
		return noop, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := px.Serve(ctx); err != nil {
			log.Error("proxy stopped", "error", err)
		}
	}()
	return func() { <-done }, nil
}

// waitNodeReady waits until the node is ready: on a replica, caught up
// with the primary once.
func waitNodeReady(ctx context.Context, store *litefs.Store) error {
	for store.Lag() >= litefs.NotSyncedLag {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the node to be ready: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
