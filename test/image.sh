#!/usr/bin/env bash
# Build the container image from the root file system `make rootfs` made on
# the host (the Dockerfile's "prebuilt" target: no base image, no network),
# then check what a cluster will run: the entrypoint answers --version, the
# user is 65532:65532, and nothing but the binary and CA certificates is in it.
# Writes dist/action-provider.oci.tar and prints the image's size.
set -euo pipefail
cd "$(dirname "$0")/.."

version="${VERSION:-dev}"
tag="localhost/keptn-action-provider:${version}"
# vfs and chroot isolation need no kernel overlay support and no daemon.
bh() { buildah --storage-driver vfs "$@"; }

if ! command -v buildah >/dev/null; then
  echo "image: installing buildah" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah >/dev/null
fi
[ -x dist/rootfs/action-provider ] || { echo "image: dist/rootfs is missing; run make rootfs" >&2; exit 1; }

# The linker removes unused methods only while nothing reachable calls a
# method by a computed name (text/template, html/template, reflect's
# MethodByName): one such call brings back every method of every typed
# client (35 → 54 MiB when the full clientset was linked); importing
# client-go's full clientset again costs 25 → 35 MiB
# (docs/performance.md#binary-size). Issue 16's bound.
max_mib=30
bin_kib=$(du -k dist/rootfs/action-provider | cut -f1)
if ((bin_kib > max_mib * 1024)); then
  echo "image: the binary is $((bin_kib / 1024)) MiB, over ${max_mib} MiB: has the linker's dead-code removal been switched off (go build -ldflags=-dumpdep shows <ReflectMethod>), or does the release build import k8s.io/client-go/kubernetes?" >&2
  exit 1
fi

bh bud --quiet --isolation chroot --target prebuilt --build-arg "VERSION=${version}" -t "$tag" . >/dev/null

fail() { echo "image: $*" >&2; exit 1; }
user=$(bh inspect --format '{{.OCIv1.Config.User}}' "$tag")
[ "$user" = "65532:65532" ] || fail "user is '$user', want 65532:65532"
entrypoint=$(bh inspect --format '{{.OCIv1.Config.Entrypoint}}' "$tag")
[ "$entrypoint" = '[/action-provider]' ] || fail "entrypoint is $entrypoint"

ctr=$(bh from --quiet "$tag")
trap 'bh rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(bh mount "$ctr")
files=$(cd "$mnt" && find . -type f | sort | tr '\n' ' ')
[ "$files" = "./action-provider ./etc/ssl/certs/ca-certificates.crt " ] || fail "unexpected files in the image: $files"
out=$("$mnt/action-provider" --version)
case "$out" in
  "action-provider ${version} ("*"without sandbox)") ;;
  *) fail "--version printed '$out'" ;;
esac

rm -f dist/action-provider.oci.tar
bh push --quiet "$tag" "oci-archive:dist/action-provider.oci.tar:${tag}" >/dev/null
size=$(du -k dist/action-provider.oci.tar | cut -f1)
echo "image: $tag ok: user $user, entrypoint $entrypoint, '$out', $((size / 1024)) MiB as an OCI archive"
