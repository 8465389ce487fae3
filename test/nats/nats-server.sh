#!/usr/bin/env bash
# Installs nats-server v2.10.7, the version Keptn 1.4.5 pins (through
# go-utils v0.20.4), for the tests in test/nats, unless it is already there,
# and prints the path of the binary. Built from source with go install
# (~25 s on 2 cores the first time); cached in ~/.cache/action-provider.
#
#   NATS_SERVER_BIN=$(test/nats/nats-server.sh) go test -race ./test/nats
set -euo pipefail

version=v2.10.7
dir="${XDG_CACHE_HOME:-$HOME/.cache}/action-provider/nats-server-$version"
bin="$dir/bin/nats-server"

if [[ ! -x "$bin" ]]; then
  echo "installing nats-server $version into $dir/bin (go install, ~25 s)" >&2
  mkdir -p "$dir"
  # A lock, so that two runs at once do not build into the same directory.
  exec 9>"$dir/.install.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    GOBIN="$dir/bin" GOFLAGS=-buildvcs=false go install "github.com/nats-io/nats-server/v2@$version" >&2
  fi
fi
"$bin" --version | grep -q "$version" || { echo "$bin is not nats-server $version" >&2; exit 1; }
echo "$bin"
