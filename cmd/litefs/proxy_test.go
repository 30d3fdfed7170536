package main

import "testing"

func TestProxyAdvertiseURL_AdvertiseHostAndProxyPort(t *testing.T) {
	tests := []struct {
		name, addr, advertise, want string
	}{
		{"no proxy", "", "http://node1:20202", ""},
		{"advertise host, proxy port", ":8080", "http://node1.internal:20202", "http://node1.internal:8080"},
		{"advertise host wins over the listen host", "0.0.0.0:8080", "http://10.0.0.5:20202", "http://10.0.0.5:8080"},
		{"ipv6 advertise host", ":8080", "http://[fd00::1]:20202", "http://[fd00::1]:8080"},
		{"no advertise url: the listen host", "127.0.0.1:8080", "", "http://127.0.0.1:8080"},
		{"neither: localhost", ":8080", "", "http://localhost:8080"},
	}
	cfg := DefaultConfig()
	cfg.Proxy.Addr, cfg.Lease.AdvertiseURL, cfg.Lease.Candidate = ":8080", "http://primary:20202", false
	if got := proxyAdvertiseURL(&cfg); got != "" {
		t.Errorf("not a candidate: got %q, want none", got)
	}
	for _, tt := range tests {
		cfg := DefaultConfig()
		cfg.Proxy.Addr, cfg.Lease.AdvertiseURL = tt.addr, tt.advertise
		if got := proxyAdvertiseURL(&cfg); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}
