package http

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/litefs/litefs"
)

func TestOpenAPIWarning_OnlyWithoutATokenBeyondLoopback(t *testing.T) {
	tests := []struct {
		addr, token string
		mutualTLS   bool
		warn        bool
	}{
		{":20202", "", false, true},
		{":20202", "", true, false},
		{"10.0.0.5:20202", "", true, false},
		{"0.0.0.0:20202", "", false, true},
		{"[::]:20202", "", false, true},
		{"10.0.0.5:20202", "", false, true},
		{"node-1:20202", "", false, true},
		{"127.0.0.1:20202", "", false, false},
		{"127.0.0.2:20202", "", false, false},
		{"[::1]:20202", "", false, false},
		{"localhost:20202", "", false, false},
		{":20202", "secret", false, false},
		{"10.0.0.5:20202", "secret", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.addr+"/"+tt.token, func(t *testing.T) {
			got := OpenAPIWarning(tt.addr, tt.token, tt.mutualTLS)
			if (got != "") != tt.warn {
				t.Fatalf("OpenAPIWarning(%q, %q) = %q, want a warning: %v", tt.addr, tt.token, got, tt.warn)
			}
		})
	}
}

func TestInfo_ReportsTheOpenAPIWarningTheLeaseAndTheHaltHolder(t *testing.T) {
	tests := []struct {
		name  string
		opts  ServerOptions
		token string
		warn  bool
	}{
		{"every interface without a token", ServerOptions{Addr: ":20202", LeaseType: "static"}, "", true},
		{"every interface with a token", ServerOptions{Addr: ":20202", LeaseType: "static", AuthToken: "tok"}, "tok", false},
		{"loopback without a token", ServerOptions{Addr: "127.0.0.1:20202", LeaseType: "static"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newHaltEnv(t, litefs.StoreOptions{}, tt.opts)
			header := map[string]string{}
			if tt.token != "" {
				header["Authorization"] = "Bearer " + tt.token
			}
			if code, body := haltCall(t, "POST", e.ts.URL+"/halt?name=a.db&id="+lockA, nodeA, nil, header); code != 200 {
				t.Fatalf("acquire: status %d %s", code, body)
			}
			code, body := do(t, "GET", e.ts.URL+"/info", nil, header)
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			var info InfoResponse
			if err := json.Unmarshal([]byte(body), &info); err != nil {
				t.Fatal(err)
			}
			if got := len(info.Warnings) > 0 && strings.Contains(info.Warnings[0], "auth token"); got != tt.warn {
				t.Fatalf("warnings %q, want the open-API warning: %v", info.Warnings, tt.warn)
			}
			if info.Lease != "static" {
				t.Fatalf("lease %q, want static", info.Lease)
			}
			if got := info.DBs["a.db"].HaltHolder; got != nodeA {
				t.Fatalf("HALT holder %q, want %s", got, nodeA)
			}
		})
	}
}
