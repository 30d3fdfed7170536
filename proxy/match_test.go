package proxy

import (
	"strings"
	"testing"
)

func TestPattern_MatchIsAnchoredWithWildcards(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		{"/login", "/login", true},
		{"/login", "/login/x", false},
		{"/login", "/x/login", false},
		{"*.png", "/img/a.png", true},
		{"*.png", "/img/a.png.html", false},
		{"/static/*", "/static/", true},
		{"/static/*", "/static/css/a.css", true},
		{"/static/*", "/staticx", false},
		{"/static/*", "/x/static/a", false},
		{"/api/*/edit", "/api/42/edit", true},
		{"/api/*/edit", "/api/1/2/edit", true},
		{"/api/*/edit", "/api/42/edit/x", false},
		{"/a*b*c", "/abc", true},
		{"/a*b*c", "/aXbYc", true},
		{"/a*b*c", "/acb", false},
		{"/ab*ba", "/aba", false}, // prefix and suffix must not overlap
		{"*", "/anything", true},
		{"*", "", true},
		{"", "", true},
		{"", "/", false},
		{"**", "/x", true},
	}
	for _, tt := range tests {
		if got := CompilePattern(tt.pattern).Match(tt.path); got != tt.want {
			t.Errorf("pattern %q on %q = %t, want %t", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestRegexps_AlwaysForwardAsLiteFSReadsIt(t *testing.T) {
	rs, err := CompileRegexps("k", []string{"^/my/path$", "/api/auth/callback/*"})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/my/path": true, "/my/path/x": false, "/x/my/path": false,
		"/api/auth/callback/github": true, "/v1/api/auth/callback": true, "/api/auth": false,
	} {
		if got := rs.Match(path); got != want {
			t.Errorf("Match(%q) = %t, want %t", path, got, want)
		}
	}
	if _, err := CompileRegexps("proxy.always-forward", []string{"ok", "("}); err == nil || !strings.Contains(err.Error(), "proxy.always-forward[1]") {
		t.Errorf("bad regexp: err %v, want one naming proxy.always-forward[1]", err)
	}
}

func TestPatterns_MatchAny(t *testing.T) {
	ps := CompilePatterns([]string{"*.ico", "/health"})
	for path, want := range map[string]bool{"/favicon.ico": true, "/health": true, "/healthz": false, "/": false} {
		if got := ps.Match(path); got != want {
			t.Errorf("Match(%q) = %t, want %t", path, got, want)
		}
	}
	if CompilePatterns(nil).Match("/x") {
		t.Error("an empty list matched")
	}
}

func TestTargetURL_AcceptsHostPortAndURLs(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"localhost:8081", "http://localhost:8081", ""},
		{":8081", "http://localhost:8081", ""},
		{"127.0.0.1:3000", "http://127.0.0.1:3000", ""},
		{"http://app:3000", "http://app:3000", ""},
		{"https://app", "https://app", ""},
		{"http://", "", "want host:port"},
	}
	for _, tt := range tests {
		u, err := targetURL(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || u.String() != tt.want {
			t.Errorf("%q: %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}
