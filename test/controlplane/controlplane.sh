#!/usr/bin/env bash
# controlplane.sh - build (cached) and run a real, local Kubernetes control
# plane for integration tests: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok (a simulated kubelet, so pods become Running/Ready
# and rollouts converge; the image of a Job's pod decides whether it succeeds,
# fails or hangs, and `kubectl logs` returns a fixed 300-line log).
# Everything listens on 127.0.0.1 only, on free ports.
#
# Usage:
#   controlplane.sh build       build/cache all binaries, print their directory
#   controlplane.sh start DIR   (build if needed and) start everything in DIR;
#                               writes DIR/kubeconfig and DIR/env
#   controlplane.sh stop DIR    stop everything started in DIR (idempotent)
#
# Binaries are cached under ${XDG_CACHE_HOME:-$HOME/.cache}/action-provider/.
# See README.md next to this file.
# shellcheck disable=SC2317 # functions run indirectly via wait_until
set -euo pipefail

K8S_VERSION="v1.37.2"      # k8s.io/kubernetes
K8S_STAGING_VERSION="v0.37.2" # k8s.io/api, k8s.io/client-go, ... matching K8S_VERSION
ETCD_VERSION="v3.7.3"
KWOK_VERSION="v0.8.0"

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/action-provider"
CP_CACHE="$CACHE_ROOT/controlplane"
VERSION_DIR="$CP_CACHE/k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
BIN_DIR="$VERSION_DIR/bin"
# kwok's stages: kwok's kustomize/stage/fast plus the Job outcome stages.
STAGES_FILE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/kwok-stages.yaml"
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# The CRDs of the tools that may own a workload the provider acts on, so that
# tests read the same objects those tools write (no controller runs): Argo CD
# Applications, Flux Kustomizations and HelmReleases, KEDA ScaledObjects,
# Argo Rollouts. Each is "module version path-in-the-module's-zip", taken from
# the Go module proxy's zip of the module (a newer Go than ours may be needed
# to build them, not to read their files).
CRDS=(
	"github.com/argoproj/argo-cd/v2 v2.14.21 manifests/crds/application-crd.yaml"
	"github.com/fluxcd/kustomize-controller v1.10.1 config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml"
	"github.com/fluxcd/helm-controller v1.4.0 config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml"
	"github.com/kedacore/keda/v2 v2.21.1 config/crd/bases/keda.sh_scaledobjects.yaml"
	"github.com/argoproj/argo-rollouts v1.10.2 manifests/crds/rollout-crd.yaml"
)
CRDS_FILE="$CP_CACHE/crds-$(printf '%s\n' "${CRDS[@]}" | cksum | cut -d' ' -f1).yaml"

# Seconds each start phase may take before start gives up.
TIMEOUT="${CONTROLPLANE_TIMEOUT:-60}"
NODE_NAME="kwok-node-0"
SERVICE_CIDR="10.0.0.0/24"
POD_CIDR="10.244.0.0/16"
# Controllers run by kube-controller-manager (names as in its --help).
KCM_CONTROLLERS="deployment-controller,replicaset-controller,statefulset-controller,daemonset-controller,job-controller,cronjob-controller,namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller,endpointslice-controller,endpoints-controller,clusterrole-aggregation-controller,disruption-controller,horizontal-pod-autoscaler-controller,ttl-after-finished-controller"

PROG=controlplane
# The script library: log, die, free_port, start_proc, wait_until,
# stop_procs, dispatch, ...
# shellcheck source=test/lib/proc.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/../lib/proc.sh"

usage() {
	cat >&2 <<EOF
usage: $0 build | start DIR | stop DIR
  build       build (cached) all binaries and print their directory
  start DIR   start etcd, kube-apiserver, kube-controller-manager, kube-scheduler
              and kwok with data/logs/pids in DIR; writes DIR/kubeconfig, DIR/env
  stop DIR    stop everything started in DIR (TERM, then KILL)
EOF
	exit 2
}

# ---------------------------------------------------------------- build ---

# Run go with a predictable environment: no user GOFLAGS/GOWORK, static binaries.
gorun() {
	env GOWORK=off GOFLAGS= CGO_ENABLED=0 GO111MODULE=on go "$@"
}

# module_field MODULE@VERSION FIELD -> value of FIELD in `go mod download -json`.
module_field() {
	local json
	json="$(cd "$CP_CACHE" && gorun mod download -json "$1")" || die "go mod download $1 failed"
	printf '%s\n' "$json" | sed -n "s/^[[:space:]]*\"$2\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" | head -n1
}

have_all_binaries() {
	local b
	for b in "${K8S_BINARIES[@]}" etcd kwok; do
		[[ -x "$BIN_DIR/$b" ]] || return 1
	done
}

build_kubernetes() {
	local b missing=0
	for b in "${K8S_BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || missing=1; done
	((missing)) || return 0
	log "first run builds Kubernetes, ~10 min (longer on a busy machine; ${K8S_VERSION}: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl; ~3 GB RAM)"
	local start=$SECONDS src="$CP_CACHE/src/kubernetes-$K8S_VERSION"
	mkdir -p "$src"
	local kmod
	kmod="$(module_field "k8s.io/kubernetes@$K8S_VERSION" GoMod)"
	[[ -f "$kmod" ]] || die "cannot find go.mod of k8s.io/kubernetes@$K8S_VERSION"
	local goline
	goline="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kmod" | head -n1)"
	{
		echo "// Scratch module generated by controlplane.sh to build Kubernetes $K8S_VERSION."
		echo "module action-provider.local/kubernetes-build"
		echo
		echo "go ${goline:-1.26.0}"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "tool ("
		for b in "${K8S_BINARIES[@]}"; do echo "	k8s.io/kubernetes/cmd/$b"; done
		echo ")"
		echo
		echo "replace ("
		# Every "k8s.io/X => ./staging/src/k8s.io/X" of kubernetes' go.mod
		# becomes "k8s.io/X => k8s.io/X v0.N.M" (the published staging module).
		sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$kmod" |
			grep -v -e '^k8s.io/sample-cli-plugin$' -e '^k8s.io/sample-controller$' |
			while read -r m; do echo "	$m => $m $K8S_STAGING_VERSION"; done
		echo ")"
	} >"$src/go.mod"
	rm -f "$src/go.sum"
	log "resolving Kubernetes dependencies (go mod tidy in $src)"
	(cd "$src" && gorun mod tidy) >&2 || die "go mod tidy for Kubernetes failed"
	local ldflags="" pkg
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ldflags+=" -X $pkg.gitVersion=$K8S_VERSION"
		ldflags+=" -X $pkg.gitMajor=$(echo "${K8S_VERSION#v}" | cut -d. -f1)"
		ldflags+=" -X $pkg.gitMinor=$(echo "${K8S_VERSION#v}" | cut -d. -f2)"
		ldflags+=" -X $pkg.gitTreeState=clean"
	done
	local out="$BIN_DIR/.tmp-k8s.$$"
	rm -rf "$out" && mkdir -p "$out"
	local pkgs=()
	for b in "${K8S_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
	log "compiling Kubernetes (go build ${pkgs[*]})"
	(cd "$src" && gorun build -trimpath -ldflags "-s -w$ldflags" -o "$out/" "${pkgs[@]}") >&2 ||
		{ rm -rf "$out"; die "building Kubernetes failed"; }
	for b in "${K8S_BINARIES[@]}"; do mv -f "$out/$b" "$BIN_DIR/$b"; done
	rm -rf "$out"
	log "built Kubernetes in $((SECONDS - start))s"
}

build_etcd() {
	[[ -x "$BIN_DIR/etcd" ]] && return 0
	log "building etcd $ETCD_VERSION"
	local start=$SECONDS src="$CP_CACHE/src/etcd-$ETCD_VERSION" m
	mkdir -p "$src"
	{
		echo "// Scratch module generated by controlplane.sh to build etcd $ETCD_VERSION."
		echo "module action-provider.local/etcd-build"
		echo
		echo "go 1.25"
		echo
		echo "require ("
		for m in server api client/pkg client pkg; do echo "	go.etcd.io/etcd/$m/v3 $ETCD_VERSION"; done
		echo ")"
		echo
		echo "tool go.etcd.io/etcd/server/v3"
	} >"$src/go.mod"
	rm -f "$src/go.sum"
	(cd "$src" && gorun mod tidy) >&2 || die "go mod tidy for etcd failed"
	local out="$BIN_DIR/.tmp-etcd.$$"
	(cd "$src" && gorun build -trimpath -ldflags "-s -w" -o "$out" go.etcd.io/etcd/server/v3) >&2 ||
		{ rm -f "$out"; die "building etcd failed"; }
	mv -f "$out" "$BIN_DIR/etcd"
	log "built etcd in $((SECONDS - start))s"
}

build_kwok() {
	[[ -x "$BIN_DIR/kwok" ]] && return 0
	log "building kwok $KWOK_VERSION"
	local start=$SECONDS gobin="$BIN_DIR/.tmp-kwok.$$"
	rm -rf "$gobin" && mkdir -p "$gobin"
	(cd "$CP_CACHE" && env GOBIN="$gobin" GOWORK=off GOFLAGS= CGO_ENABLED=0 \
		go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION") >&2 ||
		{ rm -rf "$gobin"; die "building kwok failed"; }
	mv -f "$gobin/kwok" "$BIN_DIR/kwok"
	rm -rf "$gobin"
	log "built kwok in $((SECONDS - start))s"
}

# build_crds writes CRDS_FILE once: the CRDs above, from the proxy's zips.
build_crds() {
	[[ -s "$CRDS_FILE" ]] && return 0
	command -v curl >/dev/null && command -v unzip >/dev/null || die "curl and unzip are required (apt-get install -y curl unzip)"
	local proxy entry mod ver path tmp start=$SECONDS
	proxy="$(go env GOPROXY | tr ',|' '\n\n' | grep -m1 '^http')" || die "no module proxy in GOPROXY ($(go env GOPROXY))"
	mkdir -p "$CP_CACHE" # a new machine has no cache yet
	tmp="$(mktemp -d)"
	for entry in "${CRDS[@]}"; do
		read -r mod ver path <<<"$entry"
		log "fetching the CRD $path of $mod@$ver"
		curl -fsS --retry 3 -m 300 -o "$tmp/mod.zip" "${proxy%/}/$mod/@v/$ver.zip" || { rm -rf "$tmp"; die "download $mod@$ver from $proxy failed"; }
		{ printf -- '---\n'; unzip -p "$tmp/mod.zip" "$mod@$ver/$path"; } >>"$tmp/crds.yaml" || { rm -rf "$tmp"; die "$path is not in $mod@$ver"; }
		rm -f "$tmp/mod.zip"
	done
	mv -f "$tmp/crds.yaml" "$CRDS_FILE"
	rm -rf "$tmp"
	log "CRDs ready in $((SECONDS - start))s: $CRDS_FILE"
}

build() {
	build_crds
	if have_all_binaries; then return 0; fi
	command -v go >/dev/null || die "go is required to build the control plane binaries"
	mkdir -p "$BIN_DIR"
	# Serialize concurrent builds (e.g. parallel test packages).
	if lock_or_done "$CP_CACHE/.build.lock" have_all_binaries; then return 0; fi
	local start=$SECONDS
	log "building control plane binaries into $BIN_DIR"
	build_kubernetes
	build_etcd
	build_kwok
	have_all_binaries || die "build finished but binaries are missing in $BIN_DIR"
	log "build done in $((SECONDS - start))s"
	if command -v flock >/dev/null; then exec 9>&-; fi
}

# ---------------------------------------------------------------- start ---










# The container log that kwok serves for every container of every pod
# (`kubectl logs`), in the CRI log format that kubelets read:
# "TIMESTAMP stdout F TEXT". kubectl shows TEXT: "line N of 300", and line
# 299 carries a fake secret. The timestamps are fixed (2024-01-01T00:00:01Z
# for line 1, one second more per line); see README.md.
JOB_LOG_LINES=300
JOB_LOG_SECRET="token=kwok-s3cr3t-token-value"

write_job_log() { # FILE
	local i text
	for ((i = 1; i <= JOB_LOG_LINES; i++)); do
		text="line $i of $JOB_LOG_LINES"
		((i == JOB_LOG_LINES - 1)) && text+=" $JOB_LOG_SECRET"
		printf '2024-01-01T%02d:%02d:%02d.000000000Z stdout F %s\n' \
			$((i / 3600)) $((i / 60 % 60)) $((i % 60)) "$text"
	done >"$1"
}

# kwok configuration besides the stages: every container's log is LOGFILE.
write_kwok_logs_config() { # FILE LOGFILE
	cat >"$1" <<EOF
apiVersion: kwok.x-k8s.io/v1alpha1
kind: ClusterLogs
metadata:
  name: job-log
spec:
  logs:
  - logsFile: $2
EOF
}

# pick_port VAR: set VAR to a free port. free_port runs in this shell, not in
# a $(...) subshell, so that it reads /proc/net/tcp only once (reading it
# takes bash ~0.2-1 s when there are a few hundred sockets) and remembers the
# ports it has handed out.
pick_port() {
	free_port >"$DIR/port.tmp"
	read -r "$1" <"$DIR/port.tmp"
	rm -f "$DIR/port.tmp"
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

kc() { "$BIN_DIR/kubectl" --kubeconfig "$DIR/kubeconfig" --request-timeout=10s "$@"; }

node_ready() {
	[[ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
node_untainted() { [[ -z "$(kc get node "$NODE_NAME" -o 'jsonpath={.spec.taints}')" ]]; }

make_pki() {
	local pki="$DIR/pki"
	rm -rf "$pki" && mkdir -p "$pki"
	(
		cd "$pki"
		openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-keyout ca.key -out ca.crt -days 3650 -subj "/CN=action-provider-test-ca"
		openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
		cat >apiserver.ext <<-EOF
			basicConstraints=CA:FALSE
			keyUsage=critical,digitalSignature,keyEncipherment
			extendedKeyUsage=serverAuth
			subjectAltName=IP:127.0.0.1,IP:${SERVICE_CIDR%.*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
		EOF
		openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-out apiserver.crt -days 3650 -extfile apiserver.ext
		# kwok's kubelet endpoint; kube-apiserver checks it against ca.crt.
		# (kube-apiserver presents no client certificate: kwok asks for none.)
		openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
			-keyout kwok.key -out kwok.csr -subj "/CN=$NODE_NAME"
		cat >kwok.ext <<-EOF
			basicConstraints=CA:FALSE
			keyUsage=critical,digitalSignature,keyEncipherment
			extendedKeyUsage=serverAuth
			subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$NODE_NAME
		EOF
		openssl x509 -req -in kwok.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
			-out kwok.crt -days 3650 -extfile kwok.ext
		openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key
		openssl pkey -in sa.key -pubout -out sa.pub
	) >"$DIR/logs/openssl.log" 2>&1 || { show_log openssl; die "generating certificates with openssl failed"; }
}

write_kubeconfig() { # TOKEN URL
	local ca
	ca="$(base64 <"$DIR/pki/ca.crt" | tr -d '\n')"
	(umask 077 && cat >"$DIR/kubeconfig") <<EOF
apiVersion: v1
kind: Config
clusters:
- name: action-provider-test
  cluster:
    server: $2
    certificate-authority-data: $ca
users:
- name: admin
  user:
    token: $1
contexts:
- name: action-provider-test
  context:
    cluster: action-provider-test
    user: admin
    namespace: default
current-context: action-provider-test
EOF
}


start() {
	build
	command -v openssl >/dev/null || die "openssl is required (apt-get install -y openssl)"
	command -v setsid >/dev/null || die "setsid is required (apt-get install -y util-linux)"
	# Leftovers of an earlier start in DIR.
	stop_all quiet
	local t0=$SECONDS
	mkdir -p "$DIR"/{logs,pids,home,cache,kube-cache}
	rm -rf "$DIR/etcd" "$DIR/kubeconfig" "$DIR/env"
	rm -f "$DIR"/logs/*.log
	# Nothing started here writes to ~/.kube, ~/.cache or ~/.kwok.
	export HOME="$DIR/home" XDG_CACHE_HOME="$DIR/cache" KUBECACHEDIR="$DIR/kube-cache"
	unset KUBECONFIG
	trap 'log "interrupted"; stop_all; exit 130' INT TERM

	log "generating certificates and keys in $DIR/pki"
	make_pki
	local token
	token="$(openssl rand -hex 32)"
	(umask 077 && printf '%s,admin,admin,system:masters\n' "$token" >"$DIR/pki/tokens.csv")

	local etcd_port etcd_peer_port api_port kwok_port
	pick_port etcd_port
	pick_port etcd_peer_port
	pick_port api_port
	pick_port kwok_port
	local api_url="https://127.0.0.1:$api_port" etcd_url="http://127.0.0.1:$etcd_port"
	write_kubeconfig "$token" "$api_url"

	log "starting etcd on 127.0.0.1:$etcd_port (peer $etcd_peer_port)"
	start_proc etcd "$BIN_DIR/etcd" \
		--name=controlplane \
		--data-dir="$DIR/etcd" \
		--listen-client-urls="$etcd_url" \
		--advertise-client-urls="$etcd_url" \
		--listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
		--initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
		--initial-cluster="controlplane=http://127.0.0.1:$etcd_peer_port" \
		--initial-cluster-state=new \
		--unsafe-no-fsync \
		--quota-backend-bytes=2147483648 \
		--log-level=warn
	STARTED+=(etcd)
	wait_until "etcd" etcd tcp_open "$etcd_port"

	log "starting kube-apiserver on $api_url"
	start_proc kube-apiserver "$BIN_DIR/kube-apiserver" \
		--bind-address=127.0.0.1 \
		--advertise-address=127.0.0.1 \
		--secure-port="$api_port" \
		--endpoint-reconciler-type=none \
		--etcd-servers="$etcd_url" \
		--cert-dir="$DIR/pki" \
		--tls-cert-file="$DIR/pki/apiserver.crt" \
		--tls-private-key-file="$DIR/pki/apiserver.key" \
		--token-auth-file="$DIR/pki/tokens.csv" \
		--authorization-mode=Node,RBAC \
		--service-account-key-file="$DIR/pki/sa.pub" \
		--service-account-signing-key-file="$DIR/pki/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--allow-privileged=true \
		--kubelet-preferred-address-types=InternalIP \
		--kubelet-certificate-authority="$DIR/pki/ca.crt" \
		--profiling=false
	STARTED+=(kube-apiserver)
	wait_until "kube-apiserver" kube-apiserver kc get --raw=/readyz
	log "kube-apiserver ready after $((SECONDS - t0))s"

	log "starting kube-controller-manager, kube-scheduler and kwok"
	start_proc kube-controller-manager "$BIN_DIR/kube-controller-manager" \
		--kubeconfig="$DIR/kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port=0 \
		--leader-elect=false \
		--controllers="$KCM_CONTROLLERS" \
		--horizontal-pod-autoscaler-sync-period=1s \
		--service-account-private-key-file="$DIR/pki/sa.key" \
		--root-ca-file="$DIR/pki/ca.crt" \
		--use-service-account-credentials=false \
		--profiling=false
	STARTED+=(kube-controller-manager)
	start_proc kube-scheduler "$BIN_DIR/kube-scheduler" \
		--kubeconfig="$DIR/kubeconfig" \
		--bind-address=127.0.0.1 \
		--secure-port=0 \
		--leader-elect=false \
		--profiling=false
	STARTED+=(kube-scheduler)
	# kwok's kubelet endpoint (container logs) listens on 127.0.0.1:$kwok_port;
	# --node-port puts that port into the node's status.daemonEndpoints, and
	# --node-ip makes 127.0.0.1 the node's InternalIP, where kube-apiserver
	# connects (--kubelet-preferred-address-types=InternalIP).
	local job_log="$DIR/job.log"
	write_job_log "$job_log"
	write_kwok_logs_config "$DIR/kwok-logs.yaml" "$job_log"
	start_proc kwok "$BIN_DIR/kwok" \
		--kubeconfig="$DIR/kubeconfig" \
		--config="$STAGES_FILE" \
		--config="$DIR/kwok-logs.yaml" \
		--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
		--node-ip=127.0.0.1 \
		--node-port="$kwok_port" \
		--server-address="127.0.0.1:$kwok_port" \
		--tls-cert-file="$DIR/pki/kwok.crt" \
		--tls-private-key-file="$DIR/pki/kwok.key" \
		--cidr="$POD_CIDR"
	STARTED+=(kwok)

	cat >"$DIR/node.yaml" <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE_NAME
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/hostname: $NODE_NAME
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    beta.kubernetes.io/os: linux
    beta.kubernetes.io/arch: amd64
    node-role.kubernetes.io/agent: ""
spec:
  podCIDR: 10.244.0.0/24
status:
  capacity: {cpu: "64", memory: 256Gi, pods: "1000", ephemeral-storage: 1Ti}
  allocatable: {cpu: "64", memory: 256Gi, pods: "1000", ephemeral-storage: 1Ti}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: fake
    kubeProxyVersion: fake
EOF
	kc apply -f "$DIR/node.yaml" >"$DIR/logs/node-apply.log" 2>&1 || fail "creating node $NODE_NAME failed" node-apply
	wait_until "node $NODE_NAME (Ready, set by kwok)" kwok node_ready
	# No node-lifecycle controller runs, so nobody else removes this taint.
	kc taint node "$NODE_NAME" node.kubernetes.io/not-ready- >/dev/null 2>&1 || true
	kc taint node "$NODE_NAME" node.kubernetes.io/unreachable- >/dev/null 2>&1 || true
	wait_until "node $NODE_NAME untainted" kube-apiserver node_untainted
	# Server-side: a Rollout's CRD is too big for the last-applied annotation.
	kc apply --server-side -f "$CRDS_FILE" >"$DIR/logs/crds-apply.log" 2>&1 || fail "applying the CRDs failed" crds-apply
	kc wait --for=condition=Established --timeout="${TIMEOUT}s" crd --all >>"$DIR/logs/crds-apply.log" 2>&1 ||
		fail "the CRDs were not established" crds-apply
	wait_until "ServiceAccount default/default" kube-controller-manager kc -n default get serviceaccount default
	wait_until "kwok's kubelet endpoint on 127.0.0.1:$kwok_port" kwok tcp_open "$kwok_port"
	check_alive

	{
		envline KUBECONFIG "$DIR/kubeconfig"
		envline KUBE_BIN_DIR "$BIN_DIR"
		envline KUBE_APISERVER_URL "$api_url"
		envline KUBE_TOKEN "$token"
		envline KUBE_CA_FILE "$DIR/pki/ca.crt"
		envline KUBECACHEDIR "$DIR/kube-cache"
		envline ETCD_ENDPOINT "$etcd_url"
		envline KWOK_NODE_NAME "$NODE_NAME"
		envline KWOK_JOB_LOG_FILE "$job_log"
		envline CONTROLPLANE_DIR "$DIR"
	} >"$DIR/env.tmp"
	ready "control plane" "$api_url" "$t0"
}

# ----------------------------------------------------------------- stop ---

stop_all() { stop_procs TERM "${1:-}" kwok kube-scheduler kube-controller-manager kube-apiserver etcd; }

# ----------------------------------------------------------------- main ---

main() { dispatch build BIN_DIR "$@"; }

{ main "$@"; exit $?; }
