# Everything a developer or CI runs goes through these targets; `make help` lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
# grpcnotrace drops golang.org/x/net/trace (through the OTLP exporter's
# grpc), whose html/template would keep the linker from removing unused
# methods: 18 MiB of the release binary (docs/performance.md#binary-size).
TAGS      := grpcnotrace
GOBIN     := $(shell go env GOPATH)/bin
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can
# report "context deadline exceeded" as a failure when the time runs out
# under load (golang/go#75804, fixed in Go 1.27). 200000 runs take 15-30 s
# on 2 cores.
FUZZTIME  ?= 200000x
BENCHTIME ?= 2s
REPLICAS  ?= 3
BENCH_ARGS ?=
STATICCHECK_VERSION := v0.8.2

.PHONY: help run demo test test-unit test-deploy check lint fuzz bench bench-load bench-load-nats bench-storm build build-nosandbox size rootfs image clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

run: ## run the service (sandbox mode when no cluster is configured)
	LOG_FORMAT=$${LOG_FORMAT:-text} go run ./cmd/action-provider

demo: ## run the example events through the service in sandbox mode and print what Keptn receives
	LOG_FORMAT=$${LOG_FORMAT:-text} go run ./cmd/action-provider demo

# `make test` runs the integration tests against real components, each started
# in a temporary directory and stopped, and the directory removed, however the
# tests end (also on Ctrl-C):
# - a Kubernetes control plane (test/controlplane/controlplane.sh) for
#   test/integration, via CONTROLPLANE_ENV. The first run builds Kubernetes
#   into ~/.cache (10-20 min, ~3 GB of RAM); later runs start it in seconds.
# - nats-server v2.10.7 (test/nats/nats-server.sh installs it with go
#   install, ~25 s the first time) for internal/natsbus and test/nats, via
#   NATS_SERVER_BIN; the tests start their own servers.
# - Unleash 6 with its own PostgreSQL (test/unleash/unleash.sh) for
#   toggle-feature, via UNLEASH_ENV. It needs Node 18-20 and PostgreSQL's
#   server (apt-get install -y postgresql); the first run installs
#   unleash-server from npm into ~/.cache (~20 s).
# - promtool (test/promtool/promtool.sh builds it with go install, first
#   run only) for the alert rules' unit tests in test/promtool, via
#   PROMTOOL_BIN.
# - an OpenTelemetry Collector (test/otelcol/otelcol.sh builds one with the
#   OTLP receiver and the file exporter, ~5 min the first time) for the
#   tracing test in test/integration, via OTELCOL_BIN.
# With all of them there, no test may skip: make test sets REQUIRE_INTEGRATION=1,
# under which internal/testsupport.Skip fails the test instead of skipping it.
CONTROLPLANE := test/controlplane/controlplane.sh
UNLEASH := test/unleash/unleash.sh

test: ## run every test, with the race detector, against a real Kubernetes control plane, NATS and Unleash
	@cp_dir=$$(mktemp -d "$${TMPDIR:-/tmp}/action-provider-controlplane.XXXXXX") || exit 1; \
	  un_dir=$$(mktemp -d "$${TMPDIR:-/tmp}/action-provider-unleash.XXXXXX") || exit 1; \
	  trap '$(CONTROLPLANE) stop "$$cp_dir" || true; $(UNLEASH) stop "$$un_dir" || true; rm -rf "$$cp_dir" "$$un_dir"' EXIT; \
	  trap 'exit 130' INT; trap 'exit 143' TERM; \
	  echo "starting a Kubernetes control plane for integration tests (first run builds Kubernetes, ~10-20 min)"; \
	  $(CONTROLPLANE) build >/dev/null || exit 1; \
	  $(CONTROLPLANE) start "$$cp_dir" >/dev/null || exit 1; \
	  echo "starting Unleash and PostgreSQL for the toggle-feature tests (first run installs unleash-server from npm)"; \
	  $(UNLEASH) start "$$un_dir" >/dev/null || exit 1; \
	  nats_bin=$$(test/nats/nats-server.sh) || exit 1; \
	  promtool_bin=$$(test/promtool/promtool.sh) || exit 1; \
	  otelcol_bin=$$(test/otelcol/otelcol.sh) || exit 1; \
	  echo "REQUIRE_INTEGRATION=1 CONTROLPLANE_ENV=$$cp_dir/env UNLEASH_ENV=$$un_dir/env NATS_SERVER_BIN=$$nats_bin PROMTOOL_BIN=$$promtool_bin OTELCOL_BIN=$$otelcol_bin go test -race -count=1 -timeout 15m ./..."; \
	  REQUIRE_INTEGRATION=1 CONTROLPLANE_ENV="$$cp_dir/env" UNLEASH_ENV="$$un_dir/env" NATS_SERVER_BIN="$$nats_bin" PROMTOOL_BIN="$$promtool_bin" OTELCOL_BIN="$$otelcol_bin" go test -race -count=1 -timeout 15m ./...

# test-unit prints one line for each test that skips, with its reason and
# the command that runs it (internal/testsupport/testreport reads go test
# -json); failures are shown in full.
test-unit: ## run the tests that need no cluster, NATS or Unleash (those integration tests skip, one line each), with the race detector
	set -o pipefail; env -u CONTROLPLANE_ENV -u UNLEASH_ENV -u NATS_SERVER_BIN -u PROMTOOL_BIN -u OTELCOL_BIN -u REQUIRE_INTEGRATION \
	  go test -race -count=1 -timeout 15m -json ./... | go run ./internal/testsupport/testreport

test-deploy: ## check deploy/service.yaml, the Helm chart and examples/keptn on a local control plane
	test/deploy.sh

check: ## gofmt, go vet and staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	go vet -tags nosandbox ./cmd/...
	@test -x $(GOBIN)/staticcheck || go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	$(GOBIN)/staticcheck -tags nosandbox ./cmd/...

lint: ## check the example remediation.yaml files against the built-in and the example action catalog
	go run ./cmd/action-provider lint examples/keptn/remediation.yaml
	ACTIONS_CONFIG=examples/catalog/actions.yaml go run ./cmd/action-provider lint examples/keptn/remediation.yaml examples/keptn/remediation-feature-flags.yaml

fuzz: ## fuzz the event decoder for FUZZTIME runs (default 200000x; a duration such as 1m works too)
	go test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./internal/keptnevent

bench: ## Go benchmarks of decode -> dispatch -> send
	go test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/...

bench-load: build ## load the built binary (sandbox, dry run) and report events/s, latency, connections, RSS
	go run ./cmd/bench-load -binary bin/action-provider $(BENCH_ARGS)

bench-load-nats: build ## the same load through a nats-server of its own and REPLICAS (default 3) providers in one queue group
	@nats_bin=$$(test/nats/nats-server.sh) || exit 1; \
	  NATS_SERVER_BIN="$$nats_bin" go run ./cmd/bench-load -binary bin/action-provider -transport nats -replicas $(REPLICAS) $(BENCH_ARGS)

# bench-storm starts a control plane of its own (test/controlplane, stopped
# and removed however the run ends) and sends the built binary, acting on it
# for real, 200 scale/restart events on 50 Deployments at once; see
# docs/storm.md. It runs the release binary (no sandbox), as a cluster would.
# STORM_ARGS goes to cmd/bench-storm (-events, -qps, -json, ...).
bench-storm: build-nosandbox ## a remediation storm on a real control plane: time to the last finished, API server load, the provider's requests and RSS
	@cp_dir=$$(mktemp -d "$${TMPDIR:-/tmp}/action-provider-storm.XXXXXX") || exit 1; \
	  trap '$(CONTROLPLANE) stop "$$cp_dir" >/dev/null 2>&1 || true; rm -rf "$$cp_dir"' EXIT; \
	  trap 'exit 130' INT; trap 'exit 143' TERM; \
	  echo "starting a Kubernetes control plane in $$cp_dir"; \
	  $(CONTROLPLANE) start "$$cp_dir" >/dev/null || exit 1; \
	  go run ./cmd/bench-storm -binary bin/action-provider-nosandbox -controlplane-env "$$cp_dir/env" $(STORM_ARGS)

build: ## build bin/action-provider (static)
	CGO_ENABLED=0 go build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o bin/action-provider ./cmd/action-provider

build-nosandbox: ## build bin/action-provider-nosandbox, without the in-memory cluster
	CGO_ENABLED=0 go build -trimpath -tags nosandbox,$(TAGS) -ldflags "$(LDFLAGS)" -o bin/action-provider-nosandbox ./cmd/action-provider

size: build build-nosandbox ## what the sandbox costs in binary size
	@ls -l bin/action-provider bin/action-provider-nosandbox | awk '{printf "%-34s %6.1f MiB\n", $$NF, $$5/1048576}'

rootfs: ## the container image's root file system in dist/rootfs: the static binary (no sandbox) and CA certificates
	rm -rf dist/rootfs && mkdir -p dist/rootfs/etc/ssl/certs
	CGO_ENABLED=0 go build -trimpath -tags nosandbox,$(TAGS) -ldflags "$(LDFLAGS)" -o dist/rootfs/action-provider ./cmd/action-provider
	cp /etc/ssl/certs/ca-certificates.crt dist/rootfs/etc/ssl/certs/

image: rootfs ## build and check the container image with buildah, from dist/rootfs (no registry needed)
	VERSION=$(VERSION) test/image.sh

clean: ## remove build output
	rm -rf bin dist
