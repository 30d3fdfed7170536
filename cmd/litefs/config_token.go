package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxTokenFileSize bounds what http.auth-token-file may hold.
const maxTokenFileSize = 64 << 10

// ResolveAuthToken settles the daemon's auth token from its three sources
// (SPEC 11), leaving it in h.AuthToken: http.auth-token, else the file
// http.auth-token-file (surrounding white space removed), else the
// environment variable LITEFS_AUTH_TOKEN. Setting both keys is an error, and
// so is an environment token that differs from the configured one: the
// command line sends LITEFS_AUTH_TOKEN to this daemon, so the two must agree.
// It returns where the token came from ("" when there is none).
func (h *HTTPConfig) ResolveAuthToken(lookup func(string) (string, bool)) (string, error) {
	source := ""
	switch {
	case h.AuthToken != "" && h.AuthTokenFile != "":
		return "", errors.New("http.auth-token and http.auth-token-file are both set: keep one")
	case h.AuthToken != "":
		source = "http.auth-token"
	case h.AuthTokenFile != "":
		tok, err := readTokenFile(h.AuthTokenFile)
		if err != nil {
			return "", err
		}
		h.AuthToken, source = tok, "http.auth-token-file"
	}
	env, ok := lookup(authTokenEnv)
	env = strings.TrimSpace(env)
	switch {
	case !ok || env == "":
	case source == "":
		h.AuthToken, source = env, authTokenEnv
	case env != h.AuthToken:
		return "", fmt.Errorf("%s differs from %s: the litefs commands send %s to this daemon, so the two must be the same token; unset one or make them equal", authTokenEnv, source, authTokenEnv)
	}
	h.authTokenSource = source
	return source, nil
}

// readTokenFile reads the token in path, refusing an empty or oversized
// file or one whose token holds white space or control characters (it
// could not travel in an Authorization header).
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("http.auth-token-file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
	if err != nil {
		return "", fmt.Errorf("http.auth-token-file: read %s: %w", path, err)
	}
	if len(data) > maxTokenFileSize {
		return "", fmt.Errorf("http.auth-token-file: %s is larger than %d bytes; it must hold only the token", path, maxTokenFileSize)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("http.auth-token-file: %s is empty; write the token into it", path)
	}
	if strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return "", fmt.Errorf("http.auth-token-file: the token in %s holds white space or control characters; write the token alone, on one line", path)
	}
	return tok, nil
}
