#!/usr/bin/env bash
# Builds the smallest OpenTelemetry Collector the tracing tests need (the
# OTLP receiver and the file exporter, v0.161.0: test/otelcol/collector,
# a module of its own) unless it is already built, and prints the path of
# the binary. Built from the Go module proxy (~5 min on 2 cores the first
# time, ~26 MB); cached in ~/.cache/action-provider, keyed by the
# collector's go.mod, go.sum and main.go.
#
#   OTELCOL_BIN=$(test/otelcol/otelcol.sh) go test -race -run Tracing ./test/integration
set -euo pipefail

version=v0.161.0
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/collector" && pwd)"
key=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
dir="${XDG_CACHE_HOME:-$HOME/.cache}/action-provider/otelcol-$version-$key"
bin="$dir/bin/otelcol"

if [[ ! -x "$bin" ]]; then
  echo "building otelcol $version (OTLP receiver, file exporter) into $dir/bin (~5 min the first time)" >&2
  mkdir -p "$dir/bin"
  # A lock, so that two runs at once do not build into the same directory.
  exec 9>"$dir/.build.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags '-s -w' -o "$bin.tmp" .) >&2
    mv "$bin.tmp" "$bin"
  fi
fi
"$bin" --version | grep -q "${version#v}" || { echo "$bin is not otelcol $version" >&2; exit 1; }
echo "$bin"
