package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveAuthToken_TakesTheOneSourceGivenAndRefusesConflicts(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := file("good", "s3cret\n")
	tests := []struct {
		name       string
		http       HTTPConfig
		env        string
		wantToken  string
		wantSource string
		wantErr    string
	}{
		{"none", HTTPConfig{}, "", "", "", ""},
		{"in the config", HTTPConfig{AuthToken: "tok"}, "", "tok", "http.auth-token", ""},
		{"in a file, newline trimmed", HTTPConfig{AuthTokenFile: good}, "", "s3cret", "http.auth-token-file", ""},
		{"in the environment", HTTPConfig{}, "envtok", "envtok", "LITEFS_AUTH_TOKEN", ""},
		{"environment equal to the config", HTTPConfig{AuthToken: "tok"}, "tok", "tok", "http.auth-token", ""},
		{"environment equal to the file", HTTPConfig{AuthTokenFile: good}, "s3cret", "s3cret", "http.auth-token-file", ""},
		{"both keys", HTTPConfig{AuthToken: "tok", AuthTokenFile: good}, "", "", "", "both set"},
		{"environment differs from the config", HTTPConfig{AuthToken: "tok"}, "other", "", "", "LITEFS_AUTH_TOKEN differs from http.auth-token"},
		{"missing file", HTTPConfig{AuthTokenFile: filepath.Join(dir, "nope")}, "", "", "", "no such file"},
		{"empty file", HTTPConfig{AuthTokenFile: file("empty", " \n")}, "", "", "", "is empty"},
		{"two words in the file", HTTPConfig{AuthTokenFile: file("two", "a b\n")}, "", "", "", "white space"},
		{"oversized file", HTTPConfig{AuthTokenFile: file("big", strings.Repeat("x", maxTokenFileSize+1))}, "", "", "", "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.http
			lookup := func(k string) (string, bool) {
				if k == authTokenEnv && tt.env != "" {
					return tt.env, true
				}
				return "", false
			}
			source, err := h.ResolveAuthToken(lookup)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.AuthToken != tt.wantToken || source != tt.wantSource {
				t.Fatalf("token %q from %q, want %q from %q", h.AuthToken, source, tt.wantToken, tt.wantSource)
			}
		})
	}
}

func TestParseConfig_AcceptsAuthTokenFile(t *testing.T) {
	cfg, err := ParseConfig([]byte("http:\n  auth-token-file: /run/secrets/litefs\n"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTP.AuthTokenFile != "/run/secrets/litefs" {
		t.Fatalf("auth-token-file %q", cfg.HTTP.AuthTokenFile)
	}
}
