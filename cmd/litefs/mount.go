package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/litefs/litefs"
	"github.com/litefs/litefs/fuse"
	lhttp "github.com/litefs/litefs/http"
	"golang.org/x/sync/errgroup"
)

// mountFlags are the command-line options of "litefs mount".
type mountFlags struct {
	configPath  string
	noExpandEnv bool
	withLock    bool     // run the exec commands under the HALT lock on every database
	cmd         []string // after "--": replaces the config's exec list
}

// mountSynopsis is the usage line of "litefs mount".
const mountSynopsis = "litefs mount [-config PATH] [-no-expand-env] [-with-lock] [-- CMD ARGS...]"

// parseMountFlags parses the flags of "litefs mount". With -h it prints the
// command's help to stdout and reports help (exit 0, like every command).
func parseMountFlags(args []string, stdout io.Writer) (mf *mountFlags, help bool, err error) {
	mf = &mountFlags{}
	fs := flag.NewFlagSet("mount", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by run
	fs.StringVar(&mf.configPath, "config", "", "path to litefs.yml (default: ./litefs.yml, ~/litefs.yml, /etc/litefs.yml)")
	fs.BoolVar(&mf.noExpandEnv, "no-expand-env", false, "do not expand environment variables in the config")
	fs.BoolVar(&mf.withLock, "with-lock", false, "run the command after -- (or exec) while holding the HALT lock on every database")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(fs, mountSynopsis, stdout)
			return nil, true, nil
		}
		return nil, false, &usageError{msg: "mount: " + err.Error()}
	}
	rest := fs.Args()
	if len(rest) > 0 && rest[0] == "--" {
		rest = rest[1:]
	}
	mf.cmd = rest
	return mf, false, nil
}

// loadMountConfig finds, loads and validates the configuration.
func loadMountConfig(mf *mountFlags) (*Config, error) {
	path, err := FindConfig(mf.configPath)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadConfig(path, !mf.noExpandEnv)
	if err != nil {
		return nil, err
	}
	if len(mf.cmd) > 0 {
		cfg.Exec = ExecConfigs{{Cmd: strings.Join(mf.cmd, " ")}}
	}
	if mf.withLock && len(cfg.Exec) == 0 {
		return nil, &usageError{msg: "mount: -with-lock needs a command: litefs mount -with-lock -- CMD ARGS..."}
	}
	cfg.WithLock = mf.withLock
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	if _, err := cfg.HTTP.ResolveAuthToken(os.LookupEnv); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	t := cfg.HTTP.TLS
	if cfg.PeerTLS, err = lhttp.LoadTLS(lhttp.TLSFiles{Cert: t.Cert, Key: t.Key, CA: t.CA}); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// newLogger builds the daemon's logger from the log section.
func newLogger(c LogConfig) *slog.Logger {
	level := slog.LevelInfo
	if c.Debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if !c.Timestamp {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}
	}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// runMount is "litefs mount": open the store, mount, serve until a signal.
func runMount(ctx context.Context, args []string, stdout io.Writer) error {
	mf, help, err := parseMountFlags(args, stdout)
	if help || err != nil {
		return err
	}
	cfg, err := loadMountConfig(mf)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	if warn := lhttp.OpenAPIWarning(cfg.HTTP.Addr, cfg.HTTP.AuthToken, cfg.HTTP.TLS.CA != ""); warn != "" {
		log.Warn("the node API is open to the network: " + warn)
	} else if cfg.HTTP.authTokenSource != "" {
		log.Info("API requests need the auth token", "from", cfg.HTTP.authTokenSource)
	}
	if path := os.Getenv("LITEFS_CPUPROFILE"); path != "" {
		stopProfile, err := startCPUProfile(path)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	store, err := litefs.OpenStore(ctx, litefs.StoreOptions{
		Dir:                cfg.Data.Dir,
		StrictVerify:       cfg.StrictVerify,
		SkipSync:           cfg.SkipSync,
		Compress:           cfg.Data.Compress,
		Retention:          cfg.Data.Retention,
		RetentionInterval:  cfg.Data.RetentionMonitorInterval,
		Logger:             log,
		HaltAcquireTimeout: cfg.Halt.AcquireTimeout,
		HaltTTL:            cfg.Halt.TTL,
		HaltRenewInterval:  cfg.Halt.RenewInterval,
		// A benchmark baseline (the cost of FUSE alone): never for real use.
		Passthrough: os.Getenv("LITEFS_BENCH_PASSTHROUGH") == "1",
	})
	if err != nil {
		return err
	}
	defer store.Close()
	go store.RunRetention(ctx)
	rep, err := startBackup(ctx, cfg, store, log)
	if err != nil {
		return err
	}
	if rep != nil {
		cfg.backupStatus = backupStatusFunc(rep)
		// Stopped, and waited for, before the store closes.
		bctx, bcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = rep.Run(bctx) }()
		defer func() { bcancel(); <-done }()
	}

	if err := os.MkdirAll(cfg.FUSE.Dir, 0o755); err != nil {
		return fmt.Errorf("create fuse.dir: %w", err)
	}
	if err := fuse.CleanStaleMount(cfg.FUSE.Dir); err != nil {
		return fmt.Errorf("clean up stale mount at %s: %w", cfg.FUSE.Dir, err)
	}
	if cfg.Lease.Type == "consul" {
		return serveConsulNode(ctx, stop, cfg, store, log)
	}
	return serveNode(ctx, stop, cfg, store, log)
}

// serveNode starts the HTTP API and, on a replica, the stream from the
// primary, then serves the mount until it ends.
func serveNode(ctx context.Context, stop context.CancelFunc, cfg *Config, store *litefs.Store, log *slog.Logger) error {
	replica := !cfg.Lease.Candidate
	if replica {
		store.SetReplica(&litefs.PrimaryInfo{Hostname: cfg.Lease.Hostname, AdvertiseURL: cfg.Lease.AdvertiseURL})
		store.SetHaltClient(lhttp.NewHaltClient(store, cfg.HTTP.AuthToken, lhttp.NewPeerClient(cfg.clientTLS())))
	} else if _, err := store.EnsureClusterID(); err != nil {
		return err
	}
	srv := lhttp.NewServer(store, lhttp.ServerOptions{
		Addr: cfg.HTTP.Addr, AuthToken: cfg.HTTP.AuthToken, Logger: log,
		Hostname: cfg.Lease.Hostname, AdvertiseURL: cfg.Lease.AdvertiseURL,
		Candidate: cfg.Lease.Candidate, MaxLag: cfg.Proxy.MaxLag, MountDir: cfg.FUSE.Dir,
		LeaseType: cfg.Lease.Type, TLSConfig: cfg.serverTLS(),
		ProxyURL: proxyAdvertiseURL(cfg), ExtraMetrics: proxyMetrics(cfg),
		BackupStatus: cfg.backupStatus, BackupMaxLag: cfg.Backup.MaxLag,
	})
	if err := srv.Listen(); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx) })
	if replica {
		g.Go(func() error {
			return lhttp.RunReplica(gctx, store, lhttp.ReplicaOptions{
				PrimaryURL: cfg.Lease.AdvertiseURL, PrimaryHostname: cfg.Lease.Hostname,
				Databases: cfg.Lease.Databases, ReconnectDelay: cfg.Lease.ReconnectDelay,
				AuthToken: cfg.HTTP.AuthToken, Logger: log, TLSConfig: cfg.clientTLS(),
			})
		})
	}
	g.Go(func() error {
		defer stop() // the mount ended: stop the API and the stream too
		return serveMount(gctx, stop, cfg, store, srv, log)
	})
	return g.Wait()
}

// serveMount mounts the filesystem, runs the exec commands once it is
// ready, and returns when the mount ends (signal, unmount or exec exit).
func serveMount(ctx context.Context, stop context.CancelFunc, cfg *Config, store *litefs.Store, srv *lhttp.Server, log *slog.Logger) error {
	fsys := fuse.NewFS(store, log)
	ready := make(chan struct{})
	mounted := make(chan error, 1)
	go func() {
		mounted <- fsys.Mount(ctx, cfg.FUSE.Dir, fuse.Options{AllowOther: cfg.FUSE.AllowOther, Debug: cfg.FUSE.Debug}, ready)
	}()
	select {
	case <-ready:
	case err := <-mounted:
		return err
	}
	role := "primary"
	if !store.IsPrimary() {
		role = "replica"
	}
	log.Info("mounted", "dir", cfg.FUSE.Dir, "data", cfg.Data.Dir, "role", role)

	// The proxy starts once the node is ready, before exec (SPEC 13).
	waitProxy, err := startProxyWhenReady(ctx, cfg, store, srv, log)
	if err != nil {
		stop()
		<-mounted
		return err
	}
	defer waitProxy()
	var execErr error
	if cmds := cfg.Exec.ForNode(cfg.Lease.Candidate); len(cmds) > 0 {
		execErr = runExecWhenReady(ctx, cfg, cmds, store, log)
		stop()
	} else if len(cfg.Exec) > 0 {
		log.Info("exec: every command is if-candidate and this node is not a candidate: running none")
	}
	err = <-mounted
	log.Info("unmounted", "dir", cfg.FUSE.Dir)
	if execErr != nil {
		return execErr
	}
	return err
}

// runExecWhenReady waits until the node is ready (a replica has caught up
// with the primary), then runs the exec commands; with -with-lock it holds
// the HALT lock on every database meanwhile.
func runExecWhenReady(ctx context.Context, cfg *Config, cmds ExecConfigs, store *litefs.Store, log *slog.Logger) error {
	for store.Lag() >= litefs.NotSyncedLag {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !cfg.WithLock {
		return runExec(ctx, cmds, log)
	}
	var names []string
	for _, db := range store.DBs() {
		names = append(names, db.Name())
	}
	if len(names) == 0 {
		log.Warn("-with-lock: there is no database to lock yet; running the command without the HALT lock")
		return runExec(ctx, cmds, log)
	}
	release, err := holdHaltLocks(ctx, cfg.FUSE.Dir, names)
	if err != nil {
		return fmt.Errorf("-with-lock: %w", err)
	}
	log.Info("-with-lock: holding the HALT lock", "dbs", names)
	err = runExec(ctx, cmds, log)
	if rerr := release(); rerr != nil && err == nil {
		err = fmt.Errorf("-with-lock: release: %w", rerr)
	}
	return err
}

// startCPUProfile writes a Go CPU profile of the daemon to path until the
// returned function is called (LITEFS_CPUPROFILE, for performance work).
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
