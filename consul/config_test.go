package consul

import (
	"strings"
	"testing"
	"time"
)

func TestNew_BadConfigIsRefusedWithAClearError(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty URL", Config{Key: "k"}, "lease.consul.url is empty"},
		{"not a URL", Config{URL: "http://[::1", Key: "k"}, "lease.consul.url"},
		{"scheme not http", Config{URL: "ftp://consul:8500", Key: "k"}, "scheme must be http or https"},
		{"no scheme", Config{URL: "consul:8500", Key: "k"}, "scheme must be http or https"},
		{"no host", Config{URL: "http:///litefs", Key: "k"}, "has no host"},
		{"query", Config{URL: "http://consul:8500/?dc=x", Key: "k"}, "query or fragment"},
		{"token as user name", Config{URL: "http://secret@consul:8500", Key: "k"}, "password part"},
		{"empty key", Config{URL: "http://consul:8500", Key: ""}, "lease.consul.key is empty"},
		{"key of slashes", Config{URL: "http://consul:8500", Key: "//"}, "lease.consul.key is empty"},
		{"dot-dot in key", Config{URL: "http://consul:8500", Key: "a/../b"}, "path segments"},
		{"TTL below Consul's minimum", Config{URL: "http://consul:8500", Key: "k", TTL: 5 * time.Second}, "lease.consul.ttl is 5s"},
		{"TTL above Consul's maximum", Config{URL: "http://consul:8500", Key: "k", TTL: 25 * time.Hour}, "lease.consul.ttl"},
		{"negative lock-delay", Config{URL: "http://consul:8500", Key: "k", LockDelay: -time.Second}, "lease.consul.lock-delay"},
		{"lock-delay above a minute", Config{URL: "http://consul:8500", Key: "k", LockDelay: 2 * time.Minute}, "lease.consul.lock-delay"},
		{"check TTL too short", Config{URL: "http://consul:8500", Key: "k", CheckTTL: 100 * time.Millisecond}, "check TTL"},
		{"renew interval too long", Config{URL: "http://consul:8500", Key: "k", RenewInterval: time.Second}, "renew interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestNew_ErrorsNeverShowTheToken(t *testing.T) {
	for _, raw := range []string{
		"ftp://:s3cret@consul:8500",
		"http://:s3cret@consul:8500/?x=1",
		"http://:s3cret@[::1",
	} {
		_, err := New(Config{URL: raw, Key: "k"})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Fatalf("%s: error shows the token or is missing: %v", raw, err)
		}
	}
}

func TestNew_URLGivesAddressTokenAndKeyPrefix(t *testing.T) {
	for _, tc := range []struct {
		url, key             string
		wantAddr, wantScheme string
		wantToken, wantKey   string
	}{
		{"http://localhost:8500", "litefs/primary", "localhost:8500", "http", "", "litefs/primary"},
		{"https://:tok@consul.example.com/team-a/", "primary", "consul.example.com", "https", "tok", "team-a/primary"},
		{"http://user:tok@10.0.0.1:8500/a/b", "/litefs/", "10.0.0.1:8500", "http", "tok", "a/b/litefs"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			ep, err := parseURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if ep.address != tc.wantAddr || ep.scheme != tc.wantScheme || ep.token != tc.wantToken {
				t.Fatalf("got %+v", ep)
			}
			l, err := New(Config{URL: tc.url, Key: tc.key})
			if err != nil {
				t.Fatal(err)
			}
			if l.Key() != tc.wantKey || l.ClusterIDKey() != tc.wantKey+"-cluster-id" {
				t.Fatalf("keys %q %q, want %q", l.Key(), l.ClusterIDKey(), tc.wantKey)
			}
		})
	}
}

func TestNew_ZeroTimingsTakeTheDefaults(t *testing.T) {
	l, err := New(Config{URL: "http://localhost:8500", Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	c := l.cfg
	if c.TTL != DefaultTTL || c.LockDelay != DefaultLockDelay || c.CheckTTL != DefaultCheckTTL || c.RenewInterval != DefaultCheckTTL/4 {
		t.Fatalf("defaults: %+v", c)
	}
}
