package main

// Shared pieces of the commands that talk to a running daemon over its HTTP
// API (import, export, status): flag parsing, the API client, server error
// messages and progress reporting.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	lhttp "github.com/litefs/litefs/http"
)

// defaultURL is the daemon's API address when -url is not given.
const defaultURL = "http://localhost:20202"

// Environment variables naming the PEM files the CLI uses to reach a daemon
// serving HTTPS (docs/tls.md): the CA to verify it against (the system
// roots if unset) and, for a daemon with http.tls.ca, a client certificate
// and its key.
const (
	tlsCAEnv   = "LITEFS_TLS_CA"
	tlsCertEnv = "LITEFS_TLS_CERT"
	tlsKeyEnv  = "LITEFS_TLS_KEY"
)

// cliTLS loads the CLI's TLS files from the environment, nil if none is set.
func cliTLS() (*tls.Config, error) {
	t, err := lhttp.LoadTLS(lhttp.TLSFiles{
		CA: os.Getenv(tlsCAEnv), Cert: os.Getenv(tlsCertEnv), Key: os.Getenv(tlsKeyEnv), Env: true,
	})
	if err != nil || t == nil {
		return nil, err
	}
	return t.Client, nil
}

// authTokenEnv names the environment variable holding the bearer token sent
// to a daemon configured with http.auth-token.
const authTokenEnv = "LITEFS_AUTH_TOKEN"

// maxErrorBody bounds how much of an error response is read and shown.
const maxErrorBody = 64 << 10

// Progress reporting: transfers larger than progressThreshold bytes print
// progress lines to progressOut. Variables so that tests can lower and
// capture them.
var (
	progressThreshold int64     = 64 << 20
	progressOut       io.Writer = os.Stderr
)

// sqliteHeader is the first 16 bytes of every SQLite database file.
const sqliteHeader = "SQLite format 3\x00"

// parseCommandFlags parses args with fs, allowing flags before and after
// positional arguments (flag parsing stops only at "--"). It returns the
// positional arguments. help is true if -h was given: the command's usage
// has then been printed to stdout and the command should return nil.
func parseCommandFlags(fs *flag.FlagSet, args []string, synopsis string, stdout io.Writer) (pos []string, help bool, err error) {
	fs.SetOutput(io.Discard)
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printCommandHelp(fs, synopsis, stdout)
				return nil, true, nil
			}
			return nil, false, &usageError{msg: fs.Name() + ": " + err.Error()}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), false, nil
		}
		if len(rest) == 0 {
			return pos, false, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// printCommandHelp writes a command's synopsis and flags.
func printCommandHelp(fs *flag.FlagSet, synopsis string, w io.Writer) {
	fmt.Fprintf(w, "Usage:\n  %s\n\nFlags:\n", synopsis)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	fmt.Fprintf(w, "\nSet %s when the daemon has http.auth-token; it is sent as \"Authorization: Bearer <token>\".\n", authTokenEnv)
	fmt.Fprintf(w, "For a daemon serving HTTPS (http.tls) use -url https://...; set %s to its CA file, and %s and %s to a client certificate and key when it has http.tls.ca.\n", tlsCAEnv, tlsCertEnv, tlsKeyEnv)
}

// apiClient calls the HTTP API of one litefs daemon.
type apiClient struct {
	base  *url.URL
	token string
	hc    *http.Client
}

// newAPIClient validates rawURL (the -url flag) and returns a client that
// sends the token from LITEFS_AUTH_TOKEN, if set.
func newAPIClient(cmd, rawURL string) (*apiClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &usageError{msg: fmt.Sprintf("%s: bad -url %q: want http://HOST:PORT or https://HOST:PORT (default %s)", cmd, rawURL, defaultURL)}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tlsConf, err := cliTLS()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	if tlsConf != nil {
		tr.TLSClientConfig = tlsConf
	}
	return &apiClient{
		base:  u,
		token: os.Getenv(authTokenEnv),
		hc:    &http.Client{Transport: tr}, // no overall timeout: transfers can be large
	}, nil
}

// newRequest builds a request for path with query q on the daemon.
func (c *apiClient) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// do sends req. A network failure becomes an error naming the daemon's URL;
// a response that is not 2xx becomes an *apiError carrying the server's
// message. On success the caller must close the response body.
func (c *apiClient) do(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("request to %s: %w", c.base, ctxErr)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("cannot reach litefs at %s: %v (%s)", c.base, err, reachHint(err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, c.newAPIError(resp)
	}
	return resp, nil
}

// reachHint says what to check after a failed request: the TLS settings
// for a TLS failure (docs/tls.md), else whether the daemon runs.
func reachHint(err error) string {
	var verr *tls.CertificateVerificationError
	var herr x509.HostnameError
	var oerr *net.OpError
	var rerr tls.RecordHeaderError
	switch {
	case errors.As(err, &herr):
		return "the daemon's certificate does not name the host of -url: use a host it names, e.g. localhost"
	case errors.As(err, &verr):
		return fmt.Sprintf("the daemon's certificate is not trusted: set %s to the CA file of its http.tls.ca", tlsCAEnv)
	case errors.As(err, &oerr) && oerr.Op == "remote error":
		return fmt.Sprintf("the daemon refused the TLS handshake: with http.tls.ca it requires a client certificate; set %s and %s", tlsCertEnv, tlsKeyEnv)
	case errors.As(err, &rerr):
		return "the daemon does not speak TLS: use -url http://"
	}
	return "is litefs mount running?"
}

// apiError is a non-2xx answer from the daemon.
type apiError struct {
	status int
	msg    string // the server's message, verbatim (trimmed)
	hint   string // what to do, if we know
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s (HTTP %d %s)", e.msg, e.status, http.StatusText(e.status))
	if e.hint != "" {
		s += "; " + e.hint
	}
	return s
}

// newAPIError reads the server's message from an error response. A JSON
// body with an "error" or "message" field gives that field; any other body
// is shown as it is.
func (c *apiClient) newAPIError(resp *http.Response) *apiError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	msg := strings.TrimSpace(string(body))
	var j struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if strings.HasPrefix(msg, "{") && json.Unmarshal(body, &j) == nil {
		if j.Error != "" {
			msg = j.Error
		} else if j.Message != "" {
			msg = j.Message
		}
	}
	if msg == "" {
		msg = "no error message from server"
	}
	e := &apiError{status: resp.StatusCode, msg: msg}
	if resp.StatusCode == http.StatusUnauthorized {
		if c.token == "" {
			e.hint = fmt.Sprintf("the daemon requires a token: set %s to its http.auth-token", authTokenEnv)
		} else {
			e.hint = fmt.Sprintf("check that %s matches the daemon's http.auth-token", authTokenEnv)
		}
	}
	return e
}

// progress prints transfer progress lines: one every 10% or every second,
// whichever comes first, and one at the end. It is safe for concurrent use
// (the HTTP transport writes request bodies from its own goroutine).
type progress struct {
	mu        sync.Mutex
	w         io.Writer
	label     string
	total     int64
	done      int64
	start     time.Time
	lastPrint time.Time
	lastTenth int64
	finished  bool
}

// newProgress returns a progress reporter for a transfer of total bytes, or
// nil when total is unknown or below progressThreshold. All methods accept
// a nil receiver.
func newProgress(label string, total int64) *progress {
	if total <= progressThreshold {
		return nil
	}
	now := time.Now()
	return &progress{w: progressOut, label: label, total: total, start: now, lastPrint: now}
}

// add records n more bytes transferred.
func (p *progress) add(n int) {
	if p == nil || n <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += int64(n)
	now := time.Now()
	tenth := p.done * 10 / p.total
	if p.done < p.total && tenth == p.lastTenth && now.Sub(p.lastPrint) < time.Second {
		return
	}
	if p.done >= p.total {
		p.finished = true
	}
	p.lastTenth, p.lastPrint = tenth, now
	p.printLocked(now)
}

// finish prints a last line if the transfer stopped short of its total
// (the 100% line is printed by add).
func (p *progress) finish() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.finished {
		p.finished = true
		p.printLocked(time.Now())
	}
}

func (p *progress) printLocked(now time.Time) {
	const mib = 1 << 20
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.done) / mib / secs
	}
	fmt.Fprintf(p.w, "%s: %.1f / %.1f MiB (%d%%), %.1f MiB/s\n",
		p.label, float64(p.done)/mib, float64(p.total)/mib, p.done*100/p.total, rate)
}

// progressReader counts the bytes read through it.
type progressReader struct {
	r io.Reader
	p *progress
}

func (pr *progressReader) Read(b []byte) (int, error) {
	n, err := pr.r.Read(b)
	pr.p.add(n)
	return n, err
}
