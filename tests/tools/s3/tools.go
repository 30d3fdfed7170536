//go:build tools

// Package tools pins the S3-compatible server the backup tests run:
// versitygw (github.com/versity/versitygw) with its posix backend. Build it
// with scripts/build-tool.sh versitygw (go build -o ../../../bin/versitygw
// github.com/versity/versitygw/cmd/versitygw).
//
// This is a separate module so the product's go.mod stays small and the
// server's dependencies never clash with Consul's or Litestream's.
package tools

import (
	_ "github.com/versity/versitygw/cmd/versitygw"
)
