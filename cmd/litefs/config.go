package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	lhttp "github.com/litefs/litefs/http"
	"gopkg.in/yaml.v3"
)

// Config is the content of litefs.yml (SPEC section 3). Decoding starts from
// DefaultConfig, so a key that is absent (or written with an empty/null
// value) keeps its default.
type Config struct {
	// ExitOnError makes the daemon exit when replication or the lease fails
	// instead of retrying.
	ExitOnError bool `yaml:"exit-on-error"`
	// SkipSync skips fsync of the data directory (faster, not crash safe).
	SkipSync bool `yaml:"skip-sync"`
	// StrictVerify verifies the whole database checksum after every
	// transaction instead of trusting the incremental checksum.
	StrictVerify bool `yaml:"strict-verify"`
	// Exec lists the commands run once the node is ready; the last one is the
	// application. A plain string in the file becomes a single entry.
	Exec ExecConfigs `yaml:"exec"`
	// WithLock (litefs mount -with-lock, not a config key) runs Exec while
	// this node holds the HALT lock on every database.
	WithLock bool `yaml:"-"`
	// PeerTLS is http.tls loaded at start (loadMountConfig), nil without
	// it: the listener's and every peer client's TLS configuration.
	PeerTLS *lhttp.TLS `yaml:"-"`
	// backupStatus reports the running backup to the HTTP server; nil
	// without backup.
	backupStatus func() []lhttp.BackupStatus `yaml:"-"`

	Data  DataConfig  `yaml:"data"`  // Data is the data directory section.
	FUSE  FUSEConfig  `yaml:"fuse"`  // FUSE is the mount section.
	HTTP  HTTPConfig  `yaml:"http"`  // HTTP is the node API section.
	Lease LeaseConfig `yaml:"lease"` // Lease chooses the primary.
	Halt  HaltConfig  `yaml:"halt"`  // Halt tunes the HALT lock (SPEC section 8).
	Proxy ProxyConfig `yaml:"proxy"` // Proxy is the optional HTTP proxy.
	// Backup is the optional continuous backup to S3-compatible storage
	// (SPEC section 14, docs/backup.md).
	Backup BackupConfig `yaml:"backup"`
	Log    LogConfig    `yaml:"log"` // Log configures logging.
}

// ExecConfig is one command of the exec list.
type ExecConfig struct {
	// Cmd is the command line; it is split into arguments by the caller.
	Cmd string `yaml:"cmd"`
	// IfCandidate runs the command only on nodes that may become primary.
	IfCandidate bool `yaml:"if-candidate"`
}

// ExecConfigs is the exec list. In YAML it is either one string ("cmd args")
// or a list whose items are {cmd, if-candidate} mappings or plain strings.
type ExecConfigs []ExecConfig

// ForNode returns the commands a node runs: all of them on a candidate;
// on a node that can never be primary, those without if-candidate.
func (e ExecConfigs) ForNode(candidate bool) ExecConfigs {
	var out ExecConfigs
	for _, c := range e {
		if candidate || !c.IfCandidate {
			out = append(out, c)
		}
	}
	return out
}

// UnmarshalYAML decodes a string or a list into the exec list, rejecting
// unknown keys in list items.
func (e *ExecConfigs) UnmarshalYAML(value *yaml.Node) error {
	return decodeExec(value, "exec", e)
}

// DataConfig is the data directory section.
type DataConfig struct {
	// Dir holds the databases and their LTX files.
	Dir string `yaml:"dir"`
	// Compress compresses LTX files on disk and on the wire.
	Compress bool `yaml:"compress"`
	// Retention is how long old LTX files are kept; 0 keeps only the newest.
	Retention time.Duration `yaml:"retention"`
	// RetentionMonitorInterval is how often old LTX files are removed.
	RetentionMonitorInterval time.Duration `yaml:"retention-monitor-interval"`
}

// FUSEConfig is the mount section.
type FUSEConfig struct {
	// Dir is the mount point applications open databases in.
	Dir string `yaml:"dir"`
	// AllowOther lets users other than the daemon's user use the mount.
	AllowOther bool `yaml:"allow-other"`
	// Debug logs every FUSE request.
	Debug bool `yaml:"debug"`
}

// HTTPConfig is the node API section.
type HTTPConfig struct {
	// Addr is this node's own listen address.
	Addr string `yaml:"addr"`
	// SnapshotTimeout bounds a snapshot transfer; 0 means no limit.
	SnapshotTimeout time.Duration `yaml:"snapshot-timeout"`
	// AuthToken, when set, is required as a bearer token on API requests.
	// After ResolveAuthToken it holds the token from whichever source set it.
	AuthToken string `yaml:"auth-token"`
	// AuthTokenFile names a file holding the token instead (not both).
	AuthTokenFile string `yaml:"auth-token-file"`
	// authTokenSource says where AuthToken came from, for the start-up log.
	authTokenSource string `yaml:"-"`
	// TLS turns on HTTPS between nodes.
	TLS TLSConfig `yaml:"tls"`
}

// TLSConfig holds PEM file paths for node-to-node HTTPS.
type TLSConfig struct {
	Cert string `yaml:"cert"` // Cert is this node's certificate file.
	Key  string `yaml:"key"`  // Key is the private key file of Cert.
	CA   string `yaml:"ca"`   // CA is the file of CAs peers are verified against.
}

// LeaseConfig chooses the primary (SPEC section 9).
type LeaseConfig struct {
	// Type is "static" or "consul"; required.
	Type string `yaml:"type"`
	// Hostname names the primary (static) or this node (consul).
	Hostname string `yaml:"hostname"`
	// AdvertiseURL is the primary's URL (static) or this node's URL (consul).
	AdvertiseURL string `yaml:"advertise-url"`
	// Candidate says whether this node may become primary.
	Candidate bool `yaml:"candidate"`
	// Promote asks for the primary role at start (handoff).
	Promote bool `yaml:"promote"`
	// ReconnectDelay is the wait before reconnecting to the primary.
	ReconnectDelay time.Duration `yaml:"reconnect-delay"`
	// DemoteDelay is how long a demoted node waits before competing again.
	DemoteDelay time.Duration `yaml:"demote-delay"`
	// Databases, when set on a replica, limits replication to these names.
	Databases []string `yaml:"databases"`
	// Consul configures the consul lease.
	Consul ConsulConfig `yaml:"consul"`
}

// ConsulConfig configures the Consul session lock.
type ConsulConfig struct {
	URL       string        `yaml:"url"`        // URL is the Consul agent's address.
	Key       string        `yaml:"key"`        // Key is the KV key that is locked.
	TTL       time.Duration `yaml:"ttl"`        // TTL is the session TTL.
	LockDelay time.Duration `yaml:"lock-delay"` // LockDelay is the session lock-delay.
}

// HaltConfig tunes the HALT lock (SPEC section 8).
type HaltConfig struct {
	// AcquireTimeout is how long a HALT request waits on the primary.
	AcquireTimeout time.Duration `yaml:"acquire-timeout"`
	// TTL is how long the primary keeps a HALT that is not renewed.
	TTL time.Duration `yaml:"ttl"`
	// RenewInterval is how often the holder renews; must be below TTL.
	RenewInterval time.Duration `yaml:"renew-interval"`
}

// ProxyConfig is the optional HTTP proxy in front of the application.
type ProxyConfig struct {
	Addr                   string        `yaml:"addr"`                     // Addr is the proxy's listen address; empty disables it.
	Target                 string        `yaml:"target"`                   // Target is the application's address.
	DB                     string        `yaml:"db"`                       // DB is the database whose position is tracked.
	MaxLag                 time.Duration `yaml:"max-lag"`                  // MaxLag is the replication lag tolerated before waiting.
	Passthrough            []string      `yaml:"passthrough"`              // Passthrough lists path patterns sent straight through.
	AlwaysForward          []string      `yaml:"always-forward"`           // AlwaysForward lists path patterns always sent to the primary.
	PrimaryRedirectTimeout time.Duration `yaml:"primary-redirect-timeout"` // PrimaryRedirectTimeout bounds the wait for a primary.
	// FlyReplay answers writes on a replica with a fly-replay header instead
	// of forwarding them to the primary's proxy.
	FlyReplay bool `yaml:"fly-replay"`
	// RetryFailedReadsOnPrimary retries on the primary a GET or HEAD without
	// body during which the application was refused a write on a replica.
	RetryFailedReadsOnPrimary bool `yaml:"retry-failed-reads-on-primary"`
}

// BackupConfig is the backup section. Credentials are never here: the AWS
// SDK reads them from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE
// and the shared files, like every AWS tool.
type BackupConfig struct {
	Type           string        `yaml:"type"`             // Type is "s3"; empty disables backup.
	Bucket         string        `yaml:"bucket"`           // Bucket is the bucket name.
	Path           string        `yaml:"path"`             // Path prefixes every key; database NAME lives under Path/NAME/.
	Endpoint       string        `yaml:"endpoint"`         // Endpoint is the URL of an S3-compatible store; empty is AWS.
	Region         string        `yaml:"region"`           // Region is the bucket's region.
	ForcePathStyle bool          `yaml:"force-path-style"` // ForcePathStyle addresses the bucket as a path, not a host name.
	SyncInterval   time.Duration `yaml:"sync-interval"`    // SyncInterval bounds the time a commit waits to reach the bucket.
	Retention      time.Duration `yaml:"retention"`        // Retention is how far back a restore can go.
	// SnapshotInterval is how often a full snapshot is written (bounding
	// the files a restore reads).
	SnapshotInterval time.Duration `yaml:"snapshot-interval"`
	// CompactionInterval is how often level-0 files are merged into one
	// level-1 file (Litestream's first compaction level); 0 turns it off.
	CompactionInterval time.Duration `yaml:"compaction-interval"`
	// MaxLag makes /healthz fail when the backup is this far behind; 0 is off.
	MaxLag time.Duration `yaml:"max-lag"`
}

// Enabled reports whether backup is configured.
func (b BackupConfig) Enabled() bool { return b.Type != "" }

// LogConfig configures logging.
type LogConfig struct {
	Format    string `yaml:"format"`    // Format is "text" or "json".
	Debug     bool   `yaml:"debug"`     // Debug turns on debug-level logs.
	Timestamp bool   `yaml:"timestamp"` // Timestamp adds a time to each line.
}

// DefaultConfig returns the configuration with every default of SPEC
// section 3 set. lease.type has no default: it is required.
func DefaultConfig() Config {
	return Config{
		ExitOnError: true,
		Data: DataConfig{
			Dir:                      "/var/lib/litefs",
			Compress:                 true,
			Retention:                10 * time.Minute,
			RetentionMonitorInterval: time.Minute,
		},
		FUSE: FUSEConfig{Dir: "/litefs"},
		HTTP: HTTPConfig{Addr: ":20202"},
		Lease: LeaseConfig{
			Candidate:      true,
			ReconnectDelay: time.Second,
			DemoteDelay:    10 * time.Second,
			Consul:         ConsulConfig{TTL: 10 * time.Second, LockDelay: time.Second},
		},
		Halt: HaltConfig{
			AcquireTimeout: 10 * time.Second,
			TTL:            5 * time.Second,
			RenewInterval:  time.Second,
		},
		Proxy: ProxyConfig{MaxLag: 10 * time.Second, PrimaryRedirectTimeout: 5 * time.Second},
		Log:   LogConfig{Format: "text"},
		Backup: BackupConfig{
			SyncInterval:       time.Second,
			Retention:          24 * time.Hour,
			SnapshotInterval:   time.Hour,
			CompactionInterval: time.Minute,
		},
	}
}

// configSearchPaths is the search order of FindConfig, as shown to users.
var configSearchPaths = []string{"./litefs.yml", "~/litefs.yml", "/etc/litefs.yml"}

// FindConfig returns the configuration file to load. An explicit path must
// exist. Otherwise ./litefs.yml, $HOME/litefs.yml and /etc/litefs.yml are
// tried in order and the first that exists is returned.
func FindConfig(explicit string) (string, error) {
	if explicit != "" {
		return findConfig(explicit, nil)
	}
	candidates := make([]string, 0, len(configSearchPaths))
	for _, p := range configSearchPaths {
		if rest, ok := strings.CutPrefix(p, "~/"); ok {
			home, err := os.UserHomeDir()
			if err != nil || home == "" {
				continue // no home directory: nothing to try there
			}
			p = filepath.Join(home, rest)
		}
		candidates = append(candidates, p)
	}
	return findConfig("", candidates)
}

// findConfig is FindConfig with the search list as a parameter, for tests.
func findConfig(explicit string, candidates []string) (string, error) {
	if explicit != "" {
		ok, err := isConfigFile(explicit)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("config file not found: %s", explicit)
		}
		return explicit, nil
	}
	for _, p := range candidates {
		ok, err := isConfigFile(p)
		if err != nil {
			return "", err
		}
		if ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("config file not found: tried %s", strings.Join(configSearchPaths, ", "))
}

// isConfigFile reports whether path exists. A path that exists but cannot be
// used (a directory, a permission error) is an error, not a miss.
func isConfigFile(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("config file %s: %w", path, err)
	case fi.IsDir():
		return false, fmt.Errorf("config file %s is a directory: pass the path of a YAML file", path)
	}
	return true, nil
}

// LoadConfig reads and decodes the configuration file at path. If HOSTNAME is
// unset in the environment it is first set from the OS, so ${HOSTNAME} works
// in the file and in exec commands. With expandEnv, variables are expanded
// from the process environment before decoding. The result is not validated:
// call Validate after applying command-line overrides.
func LoadConfig(path string, expandEnv bool) (*Config, error) {
	if _, ok := os.LookupEnv("HOSTNAME"); !ok {
		if host, err := os.Hostname(); err == nil {
			if err := os.Setenv("HOSTNAME", host); err != nil {
				return nil, fmt.Errorf("set HOSTNAME: %w", err)
			}
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data, expandEnv, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a litefs.yml document on top of DefaultConfig. With
// expandEnv, the text is first expanded with ExpandEnv using lookup
// (os.LookupEnv when nil). Decoding is strict: unknown or repeated keys and
// values of the wrong type are errors naming the dotted key path and its
// line. Every such error in the document is reported (joined), not just the
// first. An empty document yields the defaults.
func ParseConfig(data []byte, expandEnv bool, lookup func(string) (string, bool)) (*Config, error) {
	if expandEnv {
		if lookup == nil {
			lookup = os.LookupEnv
		}
		data = []byte(ExpandEnv(string(data), lookup))
	}
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return &cfg, nil
	} else if err != nil {
		return nil, fmt.Errorf("parse YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, fmt.Errorf("parse YAML: %w", err)
		}
		return nil, fmt.Errorf("line %d: a second YAML document starts here: a config file holds one document", line)
	}
	if err := decodeDocument(&doc, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// serverTLS is the listener's TLS configuration, nil for plain HTTP.
func (c *Config) serverTLS() *tls.Config {
	if c.PeerTLS == nil {
		return nil
	}
	return c.PeerTLS.Server
}

// clientTLS is the TLS configuration of every request to a peer, nil for
// the defaults (the system roots on https:// URLs).
func (c *Config) clientTLS() *tls.Config {
	if c.PeerTLS == nil {
		return nil
	}
	return c.PeerTLS.Client
}
