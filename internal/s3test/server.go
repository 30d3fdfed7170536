// Package s3test runs a real S3-compatible server for tests: versitygw with
// its posix backend (a bucket is a directory), on 127.0.0.1 with a free
// port and a temporary directory, and creates a bucket in it.
//
// The binary is $LITEFS_S3_SERVER, else bin/versitygw at the repository
// root (make s3 builds it). A missing binary fails the test
// when CI=true and skips it otherwise.
package s3test

import (
	"context"
	"fmt"
	"github.com/litefs/litefs/internal/testbin"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/litefs/litefs/backup"
)

// Credentials of the server's root account; tests pass them to clients
// through the usual AWS environment variables.
const (
	AccessKey = "litefs-test-access"
	SecretKey = "litefs-test-secret-0123456789"
	Region    = "us-east-1"
)

// readyTimeout bounds the wait for the server to accept connections.
const readyTimeout = 30 * time.Second

// Server is a running versitygw gateway with one bucket.
type Server struct {
	// Endpoint is http://127.0.0.1:PORT.
	Endpoint string
	// Bucket is the bucket created for the test.
	Bucket string
	// Dir is the posix backend's root (the bucket is Dir/Bucket); object
	// metadata lives in a sidecar directory beside it, so the temporary
	// directory needs no extended attributes.
	Dir string

	bin    string
	args   []string
	port   int
	cmd    *exec.Cmd
	logs   *testbin.SyncBuffer
	exited chan struct{}
}

// FindBinary returns the versitygw binary: $LITEFS_S3_SERVER or
// <repo>/bin/versitygw.
func FindBinary() (string, error) {
	return testbin.Find("LITEFS_S3_SERVER", "versitygw", "make s3")
}

// FindLitestream returns the Litestream binary: $LITEFS_LITESTREAM or
// <repo>/bin/litestream.
func FindLitestream() (string, error) {
	return testbin.Find("LITEFS_LITESTREAM", "litestream", "make litestream")
}

// Require returns the named tool's path (found by find) or, when it is
// missing, fails the test under CI=true and skips it otherwise.
func Require(t testing.TB, find func() (string, error)) string {
	t.Helper()
	path, err := find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
	return path
}

// Start starts a server for the test with bucket "litefs-test" and sets
// the AWS environment (keys, region) for the test's process (t.Setenv), so
// clients and daemons started by the test use it. It is stopped and its
// directory removed when the test ends.
func Start(t testing.TB) *Server { return start(t, TLS{}) }

// TLS is the server's certificate and key files (PEM); empty serves HTTP.
type TLS struct{ Cert, Key string }

// StartTLS is Start serving HTTPS with the given certificate: the caller
// sets AWS_CA_BUNDLE (t.Setenv) to the CA that signed it first.
func StartTLS(t testing.TB, files TLS) *Server { return start(t, files) }

func start(t testing.TB, files TLS) *Server {
	t.Helper()
	bin := Require(t, FindBinary)
	s, err := Launch(bin, t.TempDir(), "litefs-test", files)
	if s != nil {
		t.Cleanup(func() {
			s.Close()
			if t.Failed() {
				t.Logf("versitygw output:\n%s", s.logs.String())
			}
		})
	}
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	for k, v := range s.Env() {
		t.Setenv(k, v)
	}
	return s
}

// Env is the AWS environment a client of this server needs.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"AWS_ACCESS_KEY_ID":     AccessKey,
		"AWS_SECRET_ACCESS_KEY": SecretKey,
		"AWS_REGION":            Region,
	}
}

// Config is a backup.Config for this server's bucket under prefix path.
func (s *Server) Config(path string) backup.Config {
	return backup.Config{Bucket: s.Bucket, Path: path, Endpoint: s.Endpoint, Region: Region, ForcePathStyle: true}
}

// Launch starts versitygw on a free 127.0.0.1 port with its posix backend
// rooted in dir (HTTPS if files is set), waits for it and creates bucket
// with the server's credentials, which it sets in the process environment.
// Close stops it.
func Launch(bin, dir, bucket string, files TLS) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	root, meta := filepath.Join(dir, "posix"), filepath.Join(dir, "meta")
	for _, d := range []string{root, meta} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create posix backend dir: %w", err)
		}
	}
	scheme := "http"
	args := []string{"--access", AccessKey, "--secret", SecretKey, "--region", Region, "--port", fmt.Sprintf("127.0.0.1:%d", port)}
	if files.Cert != "" {
		scheme = "https"
		args = append(args, "--cert", files.Cert, "--key", files.Key)
	}
	args = append(args, "posix", "--sidecar", meta, root)
	s := &Server{Endpoint: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port), Bucket: bucket, Dir: root,
		bin: bin, args: args, port: port, logs: &testbin.SyncBuffer{}}
	if err := s.run(); err != nil {
		return s, err
	}
	return s, s.createBucket()
}

// run starts the server process and waits until it listens.
func (s *Server) run() error {
	s.exited = make(chan struct{})
	s.cmd = exec.Command(s.bin, s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := s.exited
	go func() { _ = s.cmd.Wait(); close(exited) }()
	if err := s.waitReady(s.port); err != nil {
		s.Close()
		return err
	}
	return nil
}

// Restart starts the server again, after Close, on the same port and
// directory (the bucket and its objects are kept): the end of an outage.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Close()
	if err := s.run(); err != nil {
		t.Fatalf("s3test: restart: %v", err)
	}
}

// waitReady waits until the server accepts TCP connections.
func (s *Server) waitReady(port int) error {
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("versitygw exited at start: %s", strings.TrimSpace(s.logs.String()))
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("versitygw not listening on port %d after %s", port, readyTimeout)
}

// createBucket creates s.Bucket with the server's root credentials.
func (s *Server) createBucket() error {
	for k, v := range s.Env() {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := backup.NewClient(ctx, s.Config(""))
	if err != nil {
		return err
	}
	return c.CreateBucket(ctx)
}

// Close kills the server and waits for it; safe to call twice. Until
// Restart, the store is unreachable (connection refused).
func (s *Server) Close() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
	}
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
	}
}

// Logs is the server's output so far.
func (s *Server) Logs() string { return s.logs.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
