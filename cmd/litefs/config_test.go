package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// noEnv is a lookup that knows no variables.
func noEnv(string) (string, bool) { return "", false }

// envMap returns a lookup over m.
func envMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// mustParse parses doc without expansion and fails the test on error.
func mustParse(t *testing.T, doc string) *Config {
	t.Helper()
	cfg, err := ParseConfig([]byte(doc), false, noEnv)
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return cfg
}

// wantErrContains fails unless err is non-nil and contains every substring.
func wantErrContains(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not contain %q", err, s)
		}
	}
}

func TestParseConfig_DefaultsKept(t *testing.T) {
	for _, doc := range []string{"", "\n# only a comment\n", "data:\n", "fuse: ~\nexec:\n"} {
		if got, want := *mustParse(t, doc), DefaultConfig(); !reflect.DeepEqual(got, want) {
			t.Errorf("doc %q:\n got %+v\nwant %+v", doc, got, want)
		}
	}
	got := mustParse(t, "lease:\n  type: static\ndata:\n  dir: /d\n")
	want := DefaultConfig()
	want.Lease.Type, want.Data.Dir = "static", "/d"
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("partial doc:\n got %+v\nwant %+v", *got, want)
	}
}

func TestDefaultConfig_MatchesSpec(t *testing.T) {
	c := DefaultConfig()
	checks := []struct {
		key       string
		got, want any
	}{
		{"exit-on-error", c.ExitOnError, true},
		{"data.dir", c.Data.Dir, "/var/lib/litefs"},
		{"data.compress", c.Data.Compress, true},
		{"data.retention", c.Data.Retention, 10 * time.Minute},
		{"data.retention-monitor-interval", c.Data.RetentionMonitorInterval, time.Minute},
		{"fuse.dir", c.FUSE.Dir, "/litefs"},
		{"http.addr", c.HTTP.Addr, ":20202"},
		{"lease.candidate", c.Lease.Candidate, true},
		{"lease.reconnect-delay", c.Lease.ReconnectDelay, time.Second},
		{"lease.demote-delay", c.Lease.DemoteDelay, 10 * time.Second},
		{"lease.consul.ttl", c.Lease.Consul.TTL, 10 * time.Second},
		{"lease.consul.lock-delay", c.Lease.Consul.LockDelay, time.Second},
		{"halt.acquire-timeout", c.Halt.AcquireTimeout, 10 * time.Second},
		{"halt.ttl", c.Halt.TTL, 5 * time.Second},
		{"halt.renew-interval", c.Halt.RenewInterval, time.Second},
		{"proxy.max-lag", c.Proxy.MaxLag, 10 * time.Second},
		{"proxy.primary-redirect-timeout", c.Proxy.PrimaryRedirectTimeout, 5 * time.Second},
		{"log.format", c.Log.Format, "text"},
		{"lease.type", c.Lease.Type, ""},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s default = %v, want %v", ck.key, ck.got, ck.want)
		}
	}
}

func TestParseConfig_EveryKeyDecoded(t *testing.T) {
	doc := `
exit-on-error: false
skip-sync: true
strict-verify: true
exec: "app serve"
data: {dir: /d, compress: false, retention: 0s, retention-monitor-interval: 2m}
fuse: {dir: /m, allow-other: true, debug: true}
http:
  addr: ":9"
  snapshot-timeout: 30s
  auth-token: 12345
  tls: {cert: c.pem, key: k.pem, ca: ca.pem}
lease:
  type: consul
  hostname: h
  advertise-url: http://h:9
  candidate: false
  promote: true
  reconnect-delay: 2s
  demote-delay: 3s
  databases: [a.db, b.db]
  consul: {url: "http://c:8500", key: k, ttl: 20s, lock-delay: 0s}
halt: {acquire-timeout: 4s, ttl: 6s, renew-interval: 500ms}
proxy:
  addr: ":8080"
  target: "t:1"
  db: x.db
  max-lag: 1m30s
  passthrough: ["*.png"]
  always-forward: [/admin]
  primary-redirect-timeout: 7s
  fly-replay: true
  retry-failed-reads-on-primary: true
backup:
  type: s3
  bucket: bk
  path: p/q
  endpoint: http://s3:9000
  region: eu-west-1
  force-path-style: true
  sync-interval: 2s
  retention: 48h
  snapshot-interval: 30m
  compaction-interval: 2m
  max-lag: 1m
log: {format: json, debug: true, timestamp: true}
`
	want := Config{
		SkipSync: true, StrictVerify: true, Exec: ExecConfigs{{Cmd: "app serve"}},
		Data: DataConfig{Dir: "/d", RetentionMonitorInterval: 2 * time.Minute},
		FUSE: FUSEConfig{Dir: "/m", AllowOther: true, Debug: true},
		HTTP: HTTPConfig{Addr: ":9", SnapshotTimeout: 30 * time.Second, AuthToken: "12345",
			TLS: TLSConfig{Cert: "c.pem", Key: "k.pem", CA: "ca.pem"}},
		Lease: LeaseConfig{Type: "consul", Hostname: "h", AdvertiseURL: "http://h:9", Promote: true,
			ReconnectDelay: 2 * time.Second, DemoteDelay: 3 * time.Second, Databases: []string{"a.db", "b.db"},
			Consul: ConsulConfig{URL: "http://c:8500", Key: "k", TTL: 20 * time.Second}},
		Halt: HaltConfig{AcquireTimeout: 4 * time.Second, TTL: 6 * time.Second, RenewInterval: 500 * time.Millisecond},
		Proxy: ProxyConfig{Addr: ":8080", Target: "t:1", DB: "x.db", MaxLag: 90 * time.Second,
			Passthrough: []string{"*.png"}, AlwaysForward: []string{"/admin"}, PrimaryRedirectTimeout: 7 * time.Second,
			FlyReplay: true, RetryFailedReadsOnPrimary: true},
		Backup: BackupConfig{Type: "s3", Bucket: "bk", Path: "p/q", Endpoint: "http://s3:9000", Region: "eu-west-1",
			ForcePathStyle: true, SyncInterval: 2 * time.Second, Retention: 48 * time.Hour,
			SnapshotInterval: 30 * time.Minute, CompactionInterval: 2 * time.Minute, MaxLag: time.Minute},
		Log: LogConfig{Format: "json", Debug: true, Timestamp: true},
	}
	if got := mustParse(t, doc); !reflect.DeepEqual(*got, want) {
		t.Errorf("\n got %+v\nwant %+v", *got, want)
	}
}

func TestParseConfig_UnknownKeyNamesKeyAndLine(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"top level", "lease:\n  type: static\nfuse-dir: /x\n", []string{`unknown key "fuse-dir"`, "line 3"}},
		{"nested", "fuse:\n  dirr: /x\n", []string{`unknown key "fuse.dirr"`, "line 2", `did you mean "fuse.dir"?`}},
		{"deep", "lease:\n  consul:\n\n    tll: 10s\n", []string{`unknown key "lease.consul.tll"`, "line 4", `"lease.consul.ttl"`}},
		{"no near key lists known keys", "log:\n  colour: red\n", []string{`unknown key "log.colour"`, "line 2", "debug, format, timestamp"}},
		{"exec item", "exec:\n  - cmd: a\n  - cmd: b\n    if-candiate: true\n", []string{`unknown key "exec[1].if-candiate"`, "line 4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.doc), false, noEnv)
			wantErrContains(t, err, tt.want...)
		})
	}
}

func TestParseConfig_DuplicateKeyIsError(t *testing.T) {
	_, err := ParseConfig([]byte("fuse:\n  dir: /a\n  dir: /b\n"), false, noEnv)
	wantErrContains(t, err, `duplicate key "fuse.dir"`, "line 3", "first set at line 2")
}

func TestParseConfig_BadDuration(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"word", "lease:\n  reconnect-delay: ten\n", []string{"line 2", `lease.reconnect-delay: invalid duration "ten"`}},
		{"no unit", "halt:\n  ttl: 10\n", []string{"line 2", `halt.ttl: invalid duration "10"`}},
		{"empty string", "data:\n  retention: \"\"\n", []string{"line 2", `data.retention: invalid duration ""`}},
		{"list", "proxy:\n  max-lag: [1s]\n", []string{"line 2", "proxy.max-lag: expected a duration"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.doc), false, noEnv)
			wantErrContains(t, err, tt.want...)
			var ke *keyError
			if !errors.As(err, &ke) {
				t.Errorf("error %v is not a *keyError", err)
			}
		})
	}
}

func TestParseConfig_TypeErrorNamesKeyAndLine(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"bool", "lease:\n  candidate: maybe\n", []string{"line 2", `lease.candidate: expected true or false, got "maybe"`}},
		{"section is scalar", "data: /var/lib\n", []string{"line 1", "data: expected a mapping"}},
		{"list is scalar", "lease:\n  databases: a.db\n", []string{"line 2", "lease.databases: expected a list"}},
		{"string is list", "http:\n  addr: [a]\n", []string{"line 2", "http.addr: expected a string, got a list"}},
		{"list item wrong type", "proxy:\n  passthrough:\n    - a\n    - {b: c}\n", []string{"line 4", "proxy.passthrough[1]: expected a string"}},
		{"root is list", "- a\n", []string{"line 1", "the config file: expected a mapping"}},
		{"exec mapping", "exec: {cmd: a}\n", []string{"line 1", "exec: expected a command string or a list"}},
		{"exec empty cmd", "exec:\n  - if-candidate: true\n", []string{"line 2", "exec[0].cmd is missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.doc), false, noEnv)
			wantErrContains(t, err, tt.want...)
		})
	}
}

func TestParseConfig_BoolForms(t *testing.T) {
	for doc, want := range map[string]bool{
		"candidate: true": true, "candidate: False": false, `candidate: "true"`: true,
		"candidate: 'false'": false, "candidate: yes": true, "candidate: off": false,
		"candidate: ON": true, "candidate: No": false,
	} {
		if got := mustParse(t, "lease:\n  "+doc+"\n").Lease.Candidate; got != want {
			t.Errorf("%s: candidate = %v, want %v", doc, got, want)
		}
	}
}

func TestParseConfig_ReportsEveryError(t *testing.T) {
	_, err := ParseConfig([]byte("fuse:\n  dirr: /x\nlog:\n  formt: json\nhalt:\n  ttl: x\n"), false, noEnv)
	wantErrContains(t, err, `"fuse.dirr"`, "line 2", `"log.formt"`, "line 4", "halt.ttl", "line 6")
}

func TestParseConfig_ExecStringOrList(t *testing.T) {
	tests := []struct {
		name, doc string
		want      ExecConfigs
	}{
		{"string", `exec: "myapp -addr :8080"`, ExecConfigs{{Cmd: "myapp -addr :8080"}}},
		{"empty string", `exec: ""`, nil},
		{"list of mappings", "exec:\n  - cmd: migrate\n    if-candidate: true\n  - cmd: serve\n",
			ExecConfigs{{Cmd: "migrate", IfCandidate: true}, {Cmd: "serve"}}},
		{"list of strings", "exec: [migrate, serve]", ExecConfigs{{Cmd: "migrate"}, {Cmd: "serve"}}},
		{"absent", "log: {format: text}", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.doc).Exec; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("exec = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestExecConfigs_UnmarshalYAMLDirect(t *testing.T) {
	var e ExecConfigs
	if err := yaml.Unmarshal([]byte(`"a b"`), &e); err != nil || !reflect.DeepEqual(e, ExecConfigs{{Cmd: "a b"}}) {
		t.Fatalf("string: got %#v, %v", e, err)
	}
	if err := yaml.Unmarshal([]byte("- cmd: a\n  bogus: 1\n"), &e); err == nil || !strings.Contains(err.Error(), `unknown key "exec[0].bogus"`) {
		t.Fatalf("unknown key in list item: got %v", err)
	}
}

func TestParseConfig_ExpandsEnvOnlyWhenAsked(t *testing.T) {
	doc := "lease:\n  type: static\n  candidate: ${FLY_REGION == \"den\"}\n  hostname: $HOST\n"
	env := envMap(map[string]string{"FLY_REGION": "den", "HOST": "node1"})
	cfg, err := ParseConfig([]byte(doc), true, env)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Lease.Candidate || cfg.Lease.Hostname != "node1" {
		t.Errorf("expanded: candidate=%v hostname=%q, want true, node1", cfg.Lease.Candidate, cfg.Lease.Hostname)
	}
	_, err = ParseConfig([]byte(doc), false, env)
	wantErrContains(t, err, "lease.candidate", "line 3") // "${...}" is not a bool
	cfg = mustParse(t, "lease:\n  hostname: $HOST\n")
	if cfg.Lease.Hostname != "$HOST" {
		t.Errorf("unexpanded hostname = %q, want $HOST", cfg.Lease.Hostname)
	}
}

func TestParseConfig_SyntaxAndDocumentErrors(t *testing.T) {
	_, err := ParseConfig([]byte("fuse:\n  dir: [\n"), false, noEnv)
	wantErrContains(t, err, "parse YAML", "line")
	_, err = ParseConfig([]byte("fuse:\n  dir: /a\n---\nfuse:\n  dir: /b\n"), false, noEnv)
	wantErrContains(t, err, "second YAML document", "line 3")
}

func TestParseConfig_AliasesFollowed(t *testing.T) {
	cfg := mustParse(t, "fuse:\n  dir: &m /mnt\nproxy:\n  target: *m\n")
	if cfg.Proxy.Target != "/mnt" {
		t.Errorf("proxy.target = %q, want /mnt", cfg.Proxy.Target)
	}
}

func TestFindConfig_SearchOrder(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.yml"), filepath.Join(dir, "b.yml"), filepath.Join(dir, "c.yml")
	write := func(p string) {
		if err := os.WriteFile(p, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list := []string{a, b, c}
	if _, err := findConfig("", list); err == nil ||
		err.Error() != "config file not found: tried ./litefs.yml, ~/litefs.yml, /etc/litefs.yml" {
		t.Fatalf("none exist: got %v", err)
	}
	write(c)
	if got, err := findConfig("", list); err != nil || got != c {
		t.Fatalf("only third: got %q, %v", got, err)
	}
	write(b)
	if got, err := findConfig("", list); err != nil || got != b {
		t.Fatalf("second and third: got %q, %v", got, err)
	}
	write(a)
	if got, err := findConfig("", list); err != nil || got != a {
		t.Fatalf("all: got %q, %v", got, err)
	}
}

func TestFindConfig_ExplicitMustExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yml")
	if _, err := FindConfig(missing); err == nil || err.Error() != "config file not found: "+missing {
		t.Fatalf("got %v", err)
	}
	dir := t.TempDir()
	_, err := FindConfig(dir)
	wantErrContains(t, err, dir, "is a directory")
	p := filepath.Join(dir, "x.yml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := FindConfig(p); err != nil || got != p {
		t.Fatalf("existing: got %q, %v", got, err)
	}
}

func TestFindConfig_CurrentDirBeforeHome(t *testing.T) {
	cwd, home := t.TempDir(), t.TempDir()
	t.Chdir(cwd)
	t.Setenv("HOME", home)
	if err := os.WriteFile(filepath.Join(home, "litefs.yml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := FindConfig(""); err != nil || got != filepath.Join(home, "litefs.yml") {
		t.Fatalf("home only: got %q, %v", got, err)
	}
	if err := os.WriteFile(filepath.Join(cwd, "litefs.yml"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := FindConfig(""); err != nil || got != "./litefs.yml" {
		t.Fatalf("cwd and home: got %q, %v", got, err)
	}
}

func TestLoadConfig_SetsHostnameWhenUnset(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no OS hostname: %v", err)
	}
	t.Setenv("HOSTNAME", "") // restored after the test
	os.Unsetenv("HOSTNAME")
	p := filepath.Join(t.TempDir(), "litefs.yml")
	if err := os.WriteFile(p, []byte("lease:\n  hostname: ${HOSTNAME}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Lease.Hostname != host {
		t.Errorf("hostname = %q, want %q", cfg.Lease.Hostname, host)
	}
	t.Setenv("HOSTNAME", "from-env")
	if cfg, err = LoadConfig(p, true); err != nil || cfg.Lease.Hostname != "from-env" {
		t.Errorf("set HOSTNAME: got %q, %v; want from-env", cfg.Lease.Hostname, err)
	}
}

func TestLoadConfig_ErrorNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "litefs.yml")
	if err := os.WriteFile(p, []byte("fuse:\n  dirr: /x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p, false)
	wantErrContains(t, err, "config "+p, `unknown key "fuse.dirr"`, "line 2")
	_, err = LoadConfig(filepath.Join(t.TempDir(), "missing.yml"), false)
	wantErrContains(t, err, "read config", "missing.yml")
}

func TestExampleConfig_ParsesAndValidatesAsStaticPrimary(t *testing.T) {
	data, err := os.ReadFile("../../litefs.yml.example")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(data, true, envMap(map[string]string{"HOSTNAME": "node1"}))
	if err != nil {
		t.Fatalf("parse example: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("validate example: %v", err)
	}
	if cfg.Lease.Type != "static" || !cfg.Lease.Candidate || cfg.Lease.AdvertiseURL != "http://node1:20202" {
		t.Errorf("lease = %+v, want a static primary advertising http://node1:20202", cfg.Lease)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	got := nodeKeyPaths(doc.Content[0], "")
	want := typeKeyPaths(reflect.TypeFor[Config](), "")
	for _, k := range want {
		if !slices.Contains(got, k) {
			t.Errorf("litefs.yml.example lacks key %s", k)
		}
	}
}

// nodeKeyPaths lists the dotted paths of every key in a mapping node; list
// items contribute their keys without an index.
func nodeKeyPaths(n *yaml.Node, prefix string) []string {
	var out []string
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := joinPath(prefix, n.Content[i].Value)
			out = append(out, p)
			out = append(out, nodeKeyPaths(n.Content[i+1], p)...)
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			out = append(out, nodeKeyPaths(item, prefix)...)
		}
	}
	return out
}

// typeKeyPaths lists the dotted yaml paths of every field of struct t.
func typeKeyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Tag.Get("yaml") == "-" {
			continue // not a config key (set from the command line)
		}
		p := joinPath(prefix, f.Tag.Get("yaml"))
		out = append(out, p)
		switch {
		case f.Type.Kind() == reflect.Struct:
			out = append(out, typeKeyPaths(f.Type, p)...)
		case f.Type == execConfigsType:
			out = append(out, typeKeyPaths(f.Type.Elem(), p)...)
		}
	}
	return out
}

func TestExecConfigs_ForNodeSkipsIfCandidateOnNonCandidates(t *testing.T) {
	all := ExecConfigs{{Cmd: "migrate", IfCandidate: true}, {Cmd: "serve"}}
	tests := []struct {
		name      string
		candidate bool
		want      []string
	}{
		{"candidate runs everything", true, []string{"migrate", "serve"}},
		{"non-candidate skips if-candidate", false, []string{"serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, c := range all.ForNode(tt.candidate) {
				got = append(got, c.Cmd)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("ForNode(%t) = %v, want %v", tt.candidate, got, tt.want)
			}
		})
	}
}
