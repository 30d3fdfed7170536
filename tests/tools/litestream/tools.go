//go:build tools

// Package tools pins the Litestream binary the backup interoperability test
// runs (litestream restore of a bucket litefs wrote). Build it with
// scripts/build-tool.sh litestream (go build -o ../../../bin/litestream
// github.com/benbjohnson/litestream/cmd/litestream).
//
// This is a separate module so the product's go.mod stays small.
package tools

import (
	_ "github.com/benbjohnson/litestream/cmd/litestream"
)
