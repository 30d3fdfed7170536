package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Starting and stopping the proxy section's nodes and applications.

// proxyKeys returns the proxy section of a node's litefs.yml.
func proxyKeys(addr, target string) string {
	return fmt.Sprintf("proxy:\n  addr: %q\n  target: %q\n  db: %q\n", addr, target, proxyDB)
}

// start starts the primary with its proxy and app, creates proxy.db with
// item 1, then starts the replica with its proxy and app once it has
// caught up, and waits until both proxies answer their health check.
func (s *proxySection) start(ctx context.Context, bin string, w *workDir) (err error) {
	if s.papp, err = listenApp("primary"); err != nil {
		return err
	}
	if s.rapp, err = listenApp("replica"); err != nil {
		return err
	}
	var ports [4]int // primary API, primary proxy, replica API, replica proxy
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	s.pproxy = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	s.rproxy = fmt.Sprintf("http://127.0.0.1:%d", ports[3])

	yaml := nodeYAML(w.proxyP.data, w.proxyP.mnt, ports[0], "", nil) +
		proxyKeys(fmt.Sprintf("127.0.0.1:%d", ports[1]), s.papp.addr())
	if s.primary, err = launch(bin, w.proxyP, yaml, nil); err != nil {
		return fmt.Errorf("proxy primary: %w", err)
	}
	s.primary.url = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	if err := s.primary.waitReady(ctx); err != nil {
		return fmt.Errorf("proxy primary: %w", err)
	}
	pdb, err := openFreshSchema(ctx, s.primary.mnt, proxyDB, "WAL", "NORMAL", proxySchema)
	if err != nil {
		return err
	}
	s.papp.serve(pdb)
	if _, err := pdb.ExecContext(ctx, `INSERT INTO items(id, v) VALUES(1, ?)`, proxySeed); err != nil {
		return fmt.Errorf("insert item 1 on the primary: %w", err)
	}

	yaml = nodeYAML(w.proxyR.data, w.proxyR.mnt, ports[2], s.primary.url, []string{proxyDB}) +
		proxyKeys(fmt.Sprintf("127.0.0.1:%d", ports[3]), s.rapp.addr())
	if s.replica, err = launch(bin, w.proxyR, yaml, nil); err != nil {
		return fmt.Errorf("proxy replica: %w", err)
	}
	if err := s.replica.waitReady(ctx); err != nil {
		return fmt.Errorf("proxy replica: %w", err)
	}
	if err := s.replica.waitSamePos(ctx, s.primary, proxyDB, pollInterval); err != nil {
		return fmt.Errorf("proxy replica catching up: %w", err)
	}
	rdb, err := openReplicaDB(s.replica.mnt)
	if err != nil {
		return err
	}
	s.rapp.serve(rdb)
	return errors.Join(s.waitHealthy(ctx, s.primary, s.pproxy), s.waitHealthy(ctx, s.replica, s.rproxy))
}

// waitHealthy polls the proxy's GET /litefs/health until it is 200.
func (s *proxySection) waitHealthy(ctx context.Context, d *daemon, base string) error {
	var last string
	err := d.poll(ctx, readyTimeout, pollInterval, func() (bool, error) {
		code, body, _, err := s.do(ctx, http.MethodGet, base+"/litefs/health", "", nil)
		switch {
		case err != nil:
			last = err.Error()
		case code != http.StatusOK:
			last = fmt.Sprintf("%d %q", code, body)
		}
		return err == nil && code == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("proxy %s not healthy (last answer: %s): %w", base, last, err)
	}
	return nil
}

// stop closes the apps (their databases live in the mounts) and then stops
// the replica and the primary. It is safe after a partial start.
func (s *proxySection) stop() error {
	var errs []error
	for _, a := range []*benchApp{s.rapp, s.papp} {
		if a != nil {
			errs = append(errs, closeBounded(a))
		}
	}
	for _, d := range []*daemon{s.replica, s.primary} {
		if d != nil {
			if err := d.stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop proxy node %s: %w", d.mnt, err))
			}
		}
	}
	return errors.Join(errs...)
}

// closeBounded closes an app, giving up after 10 s: a close blocked in a
// mount whose daemon is stuck must not hang the benchmark (stopping the
// daemon then releases it).
func closeBounded(a *benchApp) error {
	done := make(chan error, 1)
	go func() { done <- a.close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stop the %s app: no answer within 10s", a.name)
	}
}
