# l4edge: make run (quickstart), make test (installs what tests need, runs all
# tests with -race and every fuzz target briefly), make build, make lint,
# make soak (SOAK=10m by default).

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 8s
SOAK      ?= 10m
# Debian packages the tests drive as real peers: chromium for the status
# page, systemd for systemd-analyze verify (installing it in a container
# only adds the tools; it does not become PID 1).
DEB_PKGS  := strace nginx libnginx-mod-stream haproxy redis-server iperf3 chromium systemd

export GOTOOLCHAIN := local

.PHONY: all build run test test-deps test-go fuzz lint bench bench-smoke soak clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/l4edge ./cmd/l4edge
	$(GO) build -o $(BIN)/wsecho ./cmd/wsecho

## run: the quickstart: two wsecho backends behind l4edge on wss://127.0.0.1:8443
run: build
	@bash examples/quickstart.sh $(BIN)

## test: install test peers (as root), then every test under -race, then fuzz briefly
test: test-deps lint test-go fuzz

test-deps:
	@missing=""; for p in $(DEB_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "WARNING: missing Debian packages:$$missing (not root: tests that need them will skip)"; \
	  fi; \
	fi
	@# Debian starts the daemons it installs where it can; tests start their own.
	@-for s in nginx haproxy redis-server; do service $$s stop >/dev/null 2>&1; done; true

test-go:
	$(GO) test -race -count=1 -timeout 8m ./...

# Every Fuzz target in the tree, each for FUZZTIME. Go 1.26's fuzz
# coordinator can report "context deadline exceeded" as a failure when
# -fuzztime ends while a worker is busy (golang/go#75804, fixed in Go 1.27);
# a real finding always writes a failing input. A run that failed with that
# message and wrote no input is run once more; a second failure fails.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    for try in 1 2; do \
	      if $(GO) test $$pkg -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) >/tmp/l4edge-fuzz.log 2>&1; then break; fi; \
	      if [ $$try = 1 ] && grep -q 'context deadline exceeded' /tmp/l4edge-fuzz.log && \
	         ! grep -q 'Failing input written' /tmp/l4edge-fuzz.log; then \
	        echo "fuzz $$f: Go's fuzztime deadline race (golang/go#75804), no failing input; once more"; continue; \
	      fi; \
	      cat /tmp/l4edge-fuzz.log; echo "FAIL: fuzz $$pkg $$f"; exit 1; \
	    done; \
	    tail -n 1 /tmp/l4edge-fuzz.log; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') $$(git ls-files --others --exclude-standard '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## bench: l4edge beside HAProxy, nginx and a direct connection (about 45 minutes);
## writes bench/RESULTS.md. BASELINE=path/to/an/earlier/l4edge measures that build
## beside it in the same run (about 55 minutes). Not part of make test;
## bench-smoke (a few seconds per scenario) is, through go test ./bench.
bench: test-deps
	$(GO) run ./bench -out bench/RESULTS.md $(if $(BASELINE),-baseline $(BASELINE))

bench-smoke: test-deps
	$(GO) test -count=1 -run TestBenchSmoke -v ./bench

## soak: l4edge for SOAK (10m) under held WebSockets (terminated and passthrough),
## churn, a reload every 30 s, a backend killed every 60 s and slowloris; writes
## bench/SOAK.md and bench/soak.png, fails on growth, a cut or an unexplained error.
## Not part of make test.
soak:
	$(GO) run ./bench -soak $(SOAK) -soak-out bench/SOAK.md

clean:
	rm -rf $(BIN)
