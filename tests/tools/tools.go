//go:build tools

// Package tools pins the programs the tests run but the product does not
// link: a real Consul agent for the consul package's tests. Build it with
// scripts/build-consul.sh (go build -o ../../bin/consul github.com/hashicorp/consul).
//
// This is a separate module so the product's go.mod stays small.
package tools

import (
	_ "github.com/hashicorp/consul"
)
