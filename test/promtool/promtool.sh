#!/usr/bin/env bash
# Installs promtool from the Prometheus module (github.com/prometheus/
# prometheus/cmd/promtool), unless it is already there, and prints the path
# of the binary. Built from source with go install; cached in
# ~/.cache/action-provider, so only the first run pays for the build.
#
#   PROMTOOL=$(test/promtool/promtool.sh); "$PROMTOOL" test rules test/promtool/*.test.yaml
set -euo pipefail

# The newest Prometheus that builds with this repository's Go (1.26).
version=v0.316.0
dir="${XDG_CACHE_HOME:-$HOME/.cache}/action-provider/promtool-$version"
bin="$dir/bin/promtool"

if [[ ! -x "$bin" ]]; then
  echo "installing promtool ($version) into $dir/bin (go install, first run only)" >&2
  mkdir -p "$dir"
  # A lock, so that two runs at once do not build into the same directory.
  exec 9>"$dir/.install.lock"
  flock 9
  if [[ ! -x "$bin" ]]; then
    # remove_all_sd leaves out the cloud service discoveries (AWS, Azure,
    # GCE, ...), half of the build, which rule tests never use.
    GOBIN="$dir/bin" GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
      go install -trimpath -tags remove_all_sd \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=$version" \
      "github.com/prometheus/prometheus/cmd/promtool@$version" >&2
  fi
fi
"$bin" --version 2>&1 | grep -qF "version $version" || { echo "$bin is not promtool $version" >&2; exit 1; }
echo "$bin"
