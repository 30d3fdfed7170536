# litefs build, test and demo targets.
#
#   make demo    build, install missing system packages, run a live demo
#   make test    install missing system packages, then gofmt + vet + every test
#   make bench   build, then run the benchmark driver
#   make fuzz    run every fuzz target for FUZZTIME (default 60s) each
#
# Everything runs as root on Debian 12; system packages are installed only
# when missing.

SHELL := /bin/bash

# Go is usually installed from the official tarball under /usr/local/go.
export PATH := $(PATH):/usr/local/go/bin

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.Version=$(VERSION) -X main.Commit=$(COMMIT)

# Debian packages needed, keyed by the command that proves they are present
# (several packages separated by commas). gcc is needed by cgo
# (github.com/mattn/go-sqlite3) and by -race. node and npm run the Node.js
# test (tests/nodejs_test.go), which installs the npm package litefs-js.
# curl and pkill are used by the demo (scripts/demo.sh).
DEB_PKGS := fusermount3:fuse3 sqlite3:sqlite3 gcc:gcc,libc6-dev node:nodejs npm:npm curl:curl pkill:procps

# The benchmark driver is built only once its package has Go files.
BENCH_SRC := $(wildcard cmd/litefs-bench/*.go)

# How long `make fuzz` runs each fuzz target, and how long `make test` does.
FUZZTIME      ?= 60s
TEST_FUZZTIME ?= 3s

.PHONY: all deps check-go build test fuzz bench demo sqlite-tests clean consul

all: build

deps:
	@missing=""; \
	for pair in $(DEB_PKGS); do \
		cmd=$${pair%%:*}; pkg=$${pair#*:}; \
		command -v "$$cmd" >/dev/null 2>&1 || missing="$$missing $${pkg//,/ }"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "==> installing missing Debian packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq $$missing; \
	fi
	@if ! grep -qs '^[[:space:]]*user_allow_other' /etc/fuse.conf; then \
		echo "==> adding user_allow_other to /etc/fuse.conf"; \
		echo user_allow_other >> /etc/fuse.conf; \
	fi

check-go:
	@command -v $(GO) >/dev/null 2>&1 || { \
		echo "error: Go not found in PATH; install Go 1.26 (https://go.dev/dl/) under /usr/local/go" >&2; \
		exit 1; }

build: check-go
	@mkdir -p bin
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/litefs ./cmd/litefs
	$(GO) build -o bin/litefs-demoapp ./cmd/litefs-demoapp
ifneq ($(BENCH_SRC),)
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/litefs-bench ./cmd/litefs-bench
endif

# Real Consul agent for the consul package's tests: built once from
# tests/tools (3.5-6 min cold), then cached in bin/consul.
consul:
	./scripts/build-consul.sh

.PHONY: s3 litestream

# Real S3-compatible server (versitygw, posix backend) for the backup tests:
# built once from tests/tools/s3 (about 4 min cold), cached in bin/versitygw.
s3:
	./scripts/build-tool.sh versitygw

# Litestream v0.5 for the backup interoperability test (litestream restore
# of a bucket litefs wrote): built once from tests/tools/litestream, cached
# in bin/litestream.
litestream:
	./scripts/build-tool.sh litestream

test: deps check-go consul s3 litestream
	@echo "==> gofmt -l"
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*' -not -path './bin/*')); \
	if [ -n "$$unformatted" ]; then \
		echo "these files need gofmt:"; echo "$$unformatted"; \
		echo "==> make test: FAIL (gofmt)"; exit 1; \
	fi
	@echo "==> go vet ./..."
	@$(GO) vet ./... || { echo "==> make test: FAIL (go vet)"; exit 1; }
	@echo "==> go test -race -count=1 -timeout 18m ./..."
	@$(GO) test -race -count=1 -timeout 18m ./... || { echo "==> make test: FAIL (go test)"; exit 1; }
	@echo "==> fuzz every target for $(TEST_FUZZTIME) (make fuzz runs them longer)"
	@GO=$(GO) FUZZTIME=$(TEST_FUZZTIME) ./scripts/fuzz.sh || { echo "==> make test: FAIL (fuzz)"; exit 1; }
	@echo "==> make test: PASS"

# Every Go native fuzz target, one after another, FUZZTIME each
# (make fuzz FUZZTIME=10m; FUZZ=regex picks targets).
fuzz: check-go
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

bench: deps build consul s3
	@test -x bin/litefs-bench || { \
		echo "error: bin/litefs-bench was not built (cmd/litefs-bench has no Go files yet)" >&2; \
		exit 1; }
	./bin/litefs-bench

demo: deps build
	LITEFS_BIN=$(CURDIR)/bin/litefs LITEFS_DEMOAPP=$(CURDIR)/bin/litefs-demoapp ./scripts/demo.sh

# SQLite's own TCL test suite inside a litefs mount, next to a plain
# directory (builds testfixture once from Debian's sqlite3 source package).
sqlite-tests: deps build
	LITEFS_BIN=$(CURDIR)/bin/litefs ./scripts/sqlite-tcl-tests.sh

clean:
	rm -rf bin
