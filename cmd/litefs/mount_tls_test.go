package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/litefs/litefs/internal/tlstest"
)

// TestLoadMountConfig_TLSFilesCheckedAtStart proves that litefs mount reads
// http.tls once at start: good files give the listener and client
// configurations, a missing or foreign file is an error naming the config
// file, the key and the file, before anything is mounted.
func TestLoadMountConfig_TLSFilesCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	good := tlstest.NewCA(t, "good").WriteFiles(t, dir, "node")
	foreign := tlstest.NewCA(t, "other").WriteFiles(t, dir, "foreign")
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name           string
		cert, key, ca  string
		want           string // empty: loads
		wantMutualAuth bool
	}{
		{"cert, key and ca: mutual TLS", good.Cert, good.Key, good.CA, "", true},
		{"cert and key: HTTPS", good.Cert, good.Key, "", "", false},
		{"missing cert file", missing, good.Key, good.CA, "http.tls.cert " + missing, false},
		{"missing ca file", good.Cert, good.Key, missing, "http.tls.ca: open " + missing, false},
		{"cert of another CA", foreign.Cert, foreign.Key, good.CA, "http.tls.cert " + foreign.Cert + " does not verify against http.tls.ca", false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("litefs-%d.yml", i))
			yml := fmt.Sprintf("data: {dir: %q}\nfuse: {dir: %q}\nhttp:\n  addr: \":20202\"\n  tls: {cert: %q, key: %q, ca: %q}\n"+
				"lease: {type: static, candidate: true, advertise-url: \"https://localhost:20202\"}\n",
				filepath.Join(dir, "data"), filepath.Join(dir, "mnt"), tt.cert, tt.key, tt.ca)
			if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadMountConfig(&mountFlags{configPath: path})
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
					t.Fatalf("loadMountConfig error %v, want one naming %s and containing %q", err, path, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadMountConfig: %v", err)
			}
			if cfg.serverTLS() == nil || cfg.clientTLS() == nil {
				t.Fatalf("TLS not loaded: %+v", cfg.PeerTLS)
			}
			if got := cfg.serverTLS().ClientCAs != nil; got != tt.wantMutualAuth {
				t.Errorf("client certificates required: %t, want %t", got, tt.wantMutualAuth)
			}
		})
	}
}
