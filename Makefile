# Everything a developer or CI runs goes through these targets; `make help` lists them.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
GOBIN     := $(shell go env GOPATH)/bin
FUZZTIME  ?= 20s
BENCHTIME ?= 2s
STATICCHECK_VERSION := v0.8.2

.PHONY: help run demo test check fuzz bench bench-load build build-nosandbox size clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

run: ## run the service (sandbox mode when no cluster is configured)
	LOG_FORMAT=$${LOG_FORMAT:-text} go run ./cmd/action-provider

demo: ## run the example events through the service in sandbox mode and print what Keptn receives
	LOG_FORMAT=$${LOG_FORMAT:-text} go run ./cmd/action-provider demo

test: ## run every test, with the race detector
	go test -race -count=1 -timeout 15m ./...

check: ## gofmt, go vet and staticcheck
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	go vet ./...
	go vet -tags nosandbox ./cmd/...
	@test -x $(GOBIN)/staticcheck || go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

fuzz: ## fuzz the event decoder for FUZZTIME (default 20s)
	go test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./internal/keptnevent

bench: ## Go benchmarks of decode -> dispatch -> send
	go test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/...

bench-load: build ## load the built binary (sandbox, dry run) and report events/s, latency, connections, RSS
	go run ./cmd/bench-load -binary bin/action-provider

build: ## build bin/action-provider (static)
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o bin/action-provider ./cmd/action-provider

build-nosandbox: ## build bin/action-provider-nosandbox, without the in-memory cluster
	CGO_ENABLED=0 go build -trimpath -tags nosandbox -ldflags "$(LDFLAGS)" -o bin/action-provider-nosandbox ./cmd/action-provider

size: build build-nosandbox ## what the sandbox costs in binary size
	@ls -l bin/action-provider bin/action-provider-nosandbox | awk '{printf "%-34s %6.1f MiB\n", $$NF, $$5/1048576}'

clean: ## remove build output
	rm -rf bin
