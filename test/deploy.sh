#!/usr/bin/env bash
# test/deploy.sh - prove the deployment artefacts: deploy/service.yaml, the
# Helm chart in chart/ and the Keptn examples in examples/keptn/.
#
#   test/deploy.sh            (from the repository root; no arguments)
#
# 1. Tools: helm (built once with `go install` into the cache), the provider
#    binary, test/deploy/keptnsim (the distributor's /event endpoint, Keptn's
#    get-action step and Keptn's side of NATS, for the live test) and
#    nats-server (test/nats/nats-server.sh).
# 2. Static: the Keptn examples as Keptn 1.x reads them; `helm lint` and
#    `helm template` in both RBAC scopes and both transports, with job
#    entries in the catalog and with the gates' sections
#    (test/deploy/values-gitops.yaml) in both scopes (exact rules) (sidecar: the
#    render does not depend on the nats values; nats: one container, the
#    NATS variables, TLS and credentials Secrets, its grace period); the
#    Grafana dashboard's ConfigMap (the JSON as is, the sidecar's label) and
#    the PrometheusRule, whose spec passes `promtool check rules` and the
#    unit tests of test/promtool (`promtool test rules`); wrong values must
#    fail with the schema's (or the chart's) message.
# 3. On a real Kubernetes control plane (test/controlplane; kwok makes pods
#    Running/Ready without images), in a private network namespace when the
#    machine allows it:
#    - server-side dry runs of both manifests (deploy/service.yaml,
#      deploy/service-nats.yaml) and of the chart in both scopes and both
#      transports;
#    - the manifest applied for real: exact RBAC rules, `kubectl auth can-i`
#      matrix; deploy/service-nats.yaml applied over it leaves one container;
#      `kubectl delete -f` leaves namespace keptn alone;
#    - helm install --wait (namespaced RBAC), exact rules, can-i matrix (the
#      built-in catalog: no Job, pod log or Secret permission);
#    - the provider binary run with the chart's ServiceAccount token: scale
#      events built from examples/keptn change replicas on the server; the
#      guardrails refuse (succeeded/fail); restart, rollback, delete-pods
#      (a PodDisruptionBudget refusing, then an eviction) and an HPA-aware
#      scale work; a rollback in stage production and a delete-pods with
#      "all": true wait for approval (the approval gate's defaults), which
#      the script gives as a person would, with the kubectl command of the
#      Warning Event ApprovalPending; audit Events and Leases are written; an
#      event for a namespace outside its RBAC ends errored with "forbidden";
#    - helm test; helm upgrade -f test/deploy/values-jobs.yaml -f
#      test/deploy/values-gitops.yaml (job entries: their rules where their
#      Jobs run; the gates' sections with gitops.policy suspend: the GitOps
#      owners' Roles in flux-system and argocd; exact, and can-i matrices); helm
#      upgrade (to cluster scope: the forbidden namespace now works; the job
#      rules in the ClusterRole and the job namespaces' Roles), helm upgrade
#      to transport=nats and the built-in catalog (the sidecar and every job
#      permission go), the provider
#      binary with that Deployment's environment against a real nats-server:
#      unready until NATS is up, an event published twice runs once, its
#      replies arrive on NATS, its heartbeat Lease follows heartbeatPeriod;
#      helm uninstall, and nothing of the release is left.
# Every wait is bounded; the whole live part is limited to DEPLOY_TIMEOUT
# seconds (default 600). It exits non-zero on the first failure, with the
# reason and the relevant log tails, and prints a summary with timings.
#
# Environment: DEPLOY_NETNS=auto|on|off (default auto: a private network
# namespace via `unshare --net` when available), DEPLOY_KEEP=1 keeps the
# temporary directory, DEPLOY_TIMEOUT (seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

HELM_VERSION=v3.22.0
KUBE_VERSION=v1.37.2 # what test/controlplane runs; helm lint/template assume it
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/action-provider"
HELM_BIN_DIR="$CACHE/helm-$HELM_VERSION/bin"
HELM="$HELM_BIN_DIR/helm"
CONTROLPLANE="$ROOT/test/controlplane/controlplane.sh"
NS=keptn
RELEASE=keptn-action-provider # the chart's full name is then the release name
SA=keptn-action-provider
SA_USER="system:serviceaccount:$NS:$SA"
CLUSTER_NAME="$NS-$RELEASE" # name of the chart's ClusterRole / Roles
PLAIN_SA_USER="system:serviceaccount:$NS:action-provider"
PLAIN_LEASES="action-provider-leases" # deploy/service.yaml's Role for the Leases
NATS_SERVER_SH="$ROOT/test/nats/nats-server.sh"
LEASES_NAME="$RELEASE-leases"       # the chart's
# The rules the code needs (see the comments in deploy/service.yaml and
# chart/templates/_helpers.tpl), as kubectl's jsonpath below prints them:
# WANT_RULES where the provider acts, WANT_LEASE_RULES in its own namespace.
WANT_RULES='["apps"]|["deployments","statefulsets","daemonsets"]|["get","list","patch","watch"];'
WANT_RULES+='["apps"]|["deployments/scale","statefulsets/scale"]|["get","update"];'
WANT_RULES+='["apps"]|["replicasets"]|["get","list","watch"];'
WANT_RULES+='["apps"]|["controllerrevisions"]|["list"];'
WANT_RULES+='[""]|["pods"]|["get","list","watch"];'
WANT_RULES+='[""]|["pods/eviction"]|["create"];'
WANT_RULES+='[""]|["events"]|["create"];'
WANT_RULES+='["policy"]|["poddisruptionbudgets"]|["list"];'
WANT_RULES+='["autoscaling"]|["horizontalpodautoscalers"]|["get","list","update"];'
WANT_RULES+='["argoproj.io"]|["rollouts"]|["get","list","patch","watch"];'
WANT_RULES+='["argoproj.io"]|["rollouts/status"]|["patch"];'
WANT_RULES+='["argoproj.io"]|["rollouts/scale"]|["get","update"];'
WANT_RULES+='["keda.sh"]|["scaledobjects"]|["list","patch"];'
WANT_LEASE_RULES='["coordination.k8s.io"]|["leases"]|["get","list","watch","create","update","patch","delete"];'
WANT_LEASE_RULES+='[""]|["events"]|["create"];'
# The GitOps gate's rules (ap.gitopsRules): in the ClusterRole (cluster
# scope) get,list on Flux's and Argo CD's owners, and update with a suspend
# policy in the catalog (test/deploy/values-gitops.yaml); in namespaced scope
# Roles "$CLUSTER_NAME-gitops" in rbac.gitops.fluxNamespaces (get, update)
# and the catalog's gitops.argocdNamespaces (get, list, update), and with a
# suspend policy a ClusterRole of that name listing Flux's owners.
GITOPS_NAME="$CLUSTER_NAME-gitops"
gitops_rules() { # VERBS_FLUX VERBS_ARGO [FOUR]: as WANT_RULES (FOUR: as WANT_RULES4)
	local rn=${3:+|}
	[[ -z $1 ]] || printf '["kustomize.toolkit.fluxcd.io"]|["kustomizations"]|%s%s;["helm.toolkit.fluxcd.io"]|["helmreleases"]|%s%s;' "$rn" "$1" "$rn" "$1"
	[[ -z $2 ]] || printf '["argoproj.io"]|["applications"]|%s%s;' "$rn" "$2"
}
G_CLUSTER=$(gitops_rules '["get","list"]' '["get","list"]')                    # the ClusterRole, no suspend policy
G_CLUSTER_SUSPEND=$(gitops_rules '["get","list","update"]' '["get","list","update"]')
G_CLUSTER4=$(gitops_rules '["get","list"]' '["get","list"]' 4)
G_CLUSTER_SUSPEND4=$(gitops_rules '["get","list","update"]' '["get","list","update"]' 4)
G_FLUX_NS4=$(gitops_rules '["get","update"]' '' 4)   # Role in flux-system
G_ARGO_NS4=$(gitops_rules '' '["get","list","update"]' 4) # Role in argocd
G_LIST4='["kustomize.toolkit.fluxcd.io","helm.toolkit.fluxcd.io"]|["kustomizations","helmreleases"]||["list"];'
# With job entries in the catalog (test/deploy/values-jobs.yaml; the rules of
# chart/templates/_helpers.tpl, ap.jobRules), as rules4_of and rules_in print
# them: apiGroups|resources|resourceNames|verbs. WANT_RULES4 is WANT_RULES so.
JOBS_NAME="$CLUSTER_NAME-jobs" # the chart's Roles of job entries with settings.namespace
WANT_RULES4=$(sed -E 's/\|([^|;]*);/||\1;/g' <<<"$WANT_RULES")
J_JOBS='["batch"]|["jobs"]||["create","get","watch","delete"];'
J_PODS='[""]|["pods"]||["list"];'
J_LOG='[""]|["pods/log"]||["get"];'
J_EVENTS='[""]|["events"]||["create"];'
J_SECRETS_TARGET='[""]|["secrets"]|["cache-admin","locust-secret"]|["get"];' # entries without a namespace
J_SECRETS_RJ='[""]|["secrets"]|["jobs-token"]|["get"];'                       # the entry in remediation-jobs
J_SECRETS_BOTH='[""]|["secrets"]|["cache-admin","jobs-token","locust-secret"]|["get"];'

# ------------------------------------------------------------- reporting ---

now_ms() { date +%s%3N; }
say() { printf '\n== %s\n' "$*"; }
ok() {
	printf '   ok  %s\n' "$*"
	echo "$*" >>"$TMP/checks"
}
fail() {
	printf '\ndeploy: FAIL: %s\n' "$*" >&2
	if declare -F on_fail >/dev/null; then on_fail >&2 || true; fi
	exit 1
}
# step NAME: closes the previous step (records its duration), opens NAME.
STEP=""
STEP_T0=0
step() {
	local t
	t=$(now_ms)
	if [[ -n $STEP ]]; then printf '%s\t%s\n' "$STEP" $((t - STEP_T0)) >>"$TMP/timings"; fi
	STEP=$1
	STEP_T0=$t
	[[ -z $STEP ]] || say "$STEP"
}

# must_fail DESCRIPTION EXPECTED_TEXT COMMAND...: COMMAND must exit non-zero
# and print EXPECTED_TEXT (stdout or stderr).
must_fail() {
	local desc=$1 want=$2 out rc=0
	shift 2
	out=$("$@" 2>&1) || rc=$?
	((rc != 0)) || fail "$desc: succeeded, but it must fail"
	[[ $out == *"$want"* ]] || fail "$desc: failed without the expected message '$want'; it printed: $out"
	ok "$desc -> fails: $(grep -F -m1 -- "$want" <<<"$out" | sed 's/^[[:space:]]*//')"
}

# ---------------------------------------------------------- helm (cached) ---

install_helm() {
	if [[ -x $HELM ]] && "$HELM" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
		HELM_BUILD="warm (cached: $HELM)"
		return 0
	fi
	echo "   building helm $HELM_VERSION with go install (first run only, ~3 min)"
	local t0 gobin k8s_minor
	t0=$(now_ms)
	mkdir -p "$HELM_BIN_DIR"
	gobin=$(mktemp -d "$HELM_BIN_DIR/.tmp.XXXXXX")
	# helm's lint and template assume a Kubernetes version unless given one;
	# its release builds set it to that of its client-go (v0.37 -> 1.37).
	k8s_minor=37
	local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
	local pkg
	for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
		ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
	done
	if ! (cd "$HELM_BIN_DIR" && env GOBIN="$gobin" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
		go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"); then
		rm -rf "$gobin"
		fail "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
	fi
	mv -f "$gobin/helm" "$HELM"
	rm -rf "$gobin"
	HELM_BUILD="cold: built in $((($(now_ms) - t0) / 1000)) s"
}

# ------------------------------------------------------------ static part ---

static_checks() {
	# The least the chart needs to render: the namespaces it may act in
	# (rbac.scope=namespaced is the default).
	local tpl=("$HELM" template "$RELEASE" chart/ -n "$NS" --kube-version "$KUBE_VERSION" --set 'rbac.namespaces={sockshop-production}')
	local nsd=(--set rbac.scope=namespaced --set 'rbac.namespaces={sockshop-production}')
	local cls=(--set rbac.scope=cluster --set 'allowedNamespaces={*}')

	step "Keptn examples (examples/keptn) as Keptn 1.x reads them"
	"$TMP/bin/keptnsim" events -shipyard examples/keptn/shipyard.yaml -remediation examples/keptn/remediation.yaml \
		-project sockshop -stage production -service carts -out "$TMP/events" >/dev/null ||
		fail "examples/keptn: see the message above"
	ok "shipyard.yaml: spec.keptn.sh/0.2.x, stage production has remediation = get-action, action, evaluation, re-triggered on a failed evaluation"
	ok "remediation.yaml: spec.keptn.sh/0.1.4, $(wc -l <"$TMP/events/index.tsv") actions, all of this provider, picked as remediation-service picks them"

	step "helm lint"
	# helm lint turns the templates' fail into an [INFO] line; helm template
	# and install fail (the defaults' render is checked below).
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (defaults): $(cat "$TMP/lint.log")"
	grep -qF 'rbac.namespaces is empty: the provider acts only where it is told to' "$TMP/lint.log" ||
		fail "helm lint (defaults) does not report that rbac.namespaces is empty: $(cat "$TMP/lint.log")"
	ok "helm lint --strict chart/ (defaults: reports that rbac.namespaces is empty)"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" "${cls[@]}" >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (cluster scope): $(cat "$TMP/lint.log")"
	ok "helm lint --strict chart/ --set rbac.scope=cluster,allowedNamespaces={*}"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" "${nsd[@]}" >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (namespaced): $(cat "$TMP/lint.log")"
	ok "helm lint --strict chart/ --set rbac.scope=namespaced,rbac.namespaces={sockshop-production}"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" -f test/deploy/values-everything.yaml >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (every option): $(cat "$TMP/lint.log")"
	ok "helm lint --strict chart/ -f test/deploy/values-everything.yaml (ServiceMonitor, PDB, NetworkPolicy, remote mode)"

	step "helm template, both RBAC scopes"
	"${tpl[@]}" >"$TMP/default.yaml" || fail "helm template (defaults)"
	kinds=$(grep -E '^kind: ' "$TMP/default.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "Deployment=1,Pod=1,Role=2,RoleBinding=2,Service=1,ServiceAccount=1" ]] ||
		fail "the default (namespaced) scope renders $kinds"
	env_is "$TMP/default.yaml" ALLOWED_NAMESPACES "sockshop-production" || fail "defaults: ALLOWED_NAMESPACES is not rbac.namespaces"
	ok "defaults with rbac.namespaces={sockshop-production}: namespaced scope, $kinds, ALLOWED_NAMESPACES=sockshop-production"
	"${tpl[@]}" "${cls[@]}" >"$TMP/cluster.yaml" || fail "helm template (cluster scope)"
	kinds=$(grep -E '^kind: ' "$TMP/cluster.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "ClusterRole=1,ClusterRoleBinding=1,Deployment=1,Pod=1,Role=1,RoleBinding=1,Service=1,ServiceAccount=1" ]] ||
		fail "cluster scope renders $kinds"
	leases_role_in_ns "$TMP/cluster.yaml" || fail "cluster scope: no Role + RoleBinding $LEASES_NAME in $NS"
	ok "cluster scope: $kinds (the Pod is the helm test hook; the Role + RoleBinding are $LEASES_NAME in $NS)"
	"${tpl[@]}" "${nsd[@]}" --set 'rbac.namespaces={sockshop-production,sockshop-staging}' >"$TMP/namespaced.yaml" ||
		fail "helm template (namespaced)"
	kinds=$(grep -E '^kind: ' "$TMP/namespaced.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "Deployment=1,Pod=1,Role=3,RoleBinding=3,Service=1,ServiceAccount=1" ]] ||
		fail "namespaced scope renders $kinds"
	[[ $(grep -cE '^  namespace: sockshop-(production|staging)$' "$TMP/namespaced.yaml") == 4 ]] ||
		fail "namespaced scope: the Roles/RoleBindings are not in sockshop-production and sockshop-staging"
	leases_role_in_ns "$TMP/namespaced.yaml" || fail "namespaced scope: no Role + RoleBinding $LEASES_NAME in $NS"
	ok "namespaced scope: $kinds, one Role + RoleBinding in each of sockshop-production, sockshop-staging, and $LEASES_NAME in $NS"
	env_is "$TMP/namespaced.yaml" ALLOWED_NAMESPACES "sockshop-production,sockshop-staging" ||
		fail "namespaced scope: ALLOWED_NAMESPACES is not rbac.namespaces"
	env_is "$TMP/cluster.yaml" ALLOWED_NAMESPACES "*" || fail "cluster scope: ALLOWED_NAMESPACES is not *"
	"${tpl[@]}" "${nsd[@]}" --set 'allowedNamespaces={sockshop-prod*}' >"$TMP/narrow.yaml" || fail "helm template (allowedNamespaces)"
	env_is "$TMP/narrow.yaml" ALLOWED_NAMESPACES "sockshop-prod*" || fail "an explicit allowedNamespaces is not kept in namespaced scope"
	ok "ALLOWED_NAMESPACES: rbac.namespaces joined (namespaced, allowedNamespaces empty), allowedNamespaces when set (* in cluster scope here)"
	! grep -qF -- '- name: NAMESPACE_OPT_IN_LABEL' "$TMP/cluster.yaml" || fail "NAMESPACE_OPT_IN_LABEL is set without namespaceOptInLabel"
	"${tpl[@]}" --set rbac.scope=cluster --set namespaceOptInLabel=keptn-action-provider.io/remediation=enabled >"$TMP/optin.yaml" ||
		fail "helm template (namespaceOptInLabel)"
	env_is "$TMP/optin.yaml" NAMESPACE_OPT_IN_LABEL "keptn-action-provider.io/remediation=enabled" || fail "namespaceOptInLabel does not reach NAMESPACE_OPT_IN_LABEL"
	env_is "$TMP/optin.yaml" ALLOWED_NAMESPACES "" || fail "namespaceOptInLabel alone: ALLOWED_NAMESPACES is not empty"
	grep -B1 -A3 -F 'resources: ["namespaces"]' "$TMP/optin.yaml" | grep -qF 'verbs: ["get"]' || fail "namespaceOptInLabel: the ClusterRole does not get namespaces"
	ok "namespaceOptInLabel (cluster scope): NAMESPACE_OPT_IN_LABEL set, ALLOWED_NAMESPACES empty, the ClusterRole gets namespaces"
	local f
	for f in POD_NAMESPACE:metadata.namespace POD_NAME:metadata.name; do
		grep -A3 -F -- "- name: ${f%%:*}" "$TMP/default.yaml" | grep -qF "fieldPath: ${f#*:}" ||
			fail "${f%%:*} does not come from the downward API (${f#*:})"
	done
	ok "POD_NAMESPACE, POD_NAME from the downward API (metadata.namespace, metadata.name)"
	"${tpl[@]}" --set dryRun=true --set logLevel=debug --set shutdownGraceSeconds=120 --set scale.maxReplicas=7 \
		--set scale.maxStep=3 --set deletePods.maxPods=4 --set cooldown=90s --set verifyTimeout=1m30s \
		--show-only templates/deployment.yaml >"$TMP/values.yaml" || fail "helm template with values"
	local want
	for want in 'name: DRY_RUN|value: "true"' 'name: LOG_LEVEL|value: "debug"' 'name: SHUTDOWN_GRACE|value: "120s"' \
		'name: SCALE_MAX_REPLICAS|value: "7"' 'name: MAX_EVENT_BYTES|value: "65536"' 'name: SANDBOX|value: "false"' \
		'name: SCALE_MAX_STEP|value: "3"' 'name: DELETE_PODS_MAX|value: "4"' 'name: ACTION_COOLDOWN|value: "90s"' \
		'name: VERIFY_TIMEOUT|value: "1m30s"' 'name: GOGC|value: "200"' \
		'name: EVENTBROKER|value: "http://localhost:8081/event"' 'name: PUBSUB_RECIPIENT_PORT|value: "8080"'; do
		grep -A1 -F -- "- ${want%%|*}" "$TMP/values.yaml" | grep -qF -- "${want#*|}" ||
			fail "values do not reach the environment: want ${want/|/ }"
	done
	grep -qF 'terminationGracePeriodSeconds: 150' "$TMP/values.yaml" ||
		fail "terminationGracePeriodSeconds does not follow shutdownGraceSeconds (want 120+10+5+15=150)"
	grep -qF 'command: ["/bin/sleep", "135"]' "$TMP/values.yaml" ||
		fail "the distributor's preStop does not follow shutdownGraceSeconds (want sleep 135)"
	"${tpl[@]}" --set goGC=null --show-only templates/deployment.yaml >"$TMP/gogc.yaml" || fail "helm template --set goGC=null"
	! grep -qF -- '- name: GOGC' "$TMP/gogc.yaml" || fail "goGC=null still sets GOGC"
	ok "values reach the pod: DRY_RUN, LOG_LEVEL, SCALE_MAX_STEP, DELETE_PODS_MAX, ACTION_COOLDOWN, VERIFY_TIMEOUT, SHUTDOWN_GRACE=120s -> preStop sleep 135, grace period 150; SANDBOX=false; GOGC=200 by default, none with goGC=null"

	step "the action catalog through the chart (catalog, secretMounts)"
	"${tpl[@]}" -f test/deploy/values-catalog.yaml >"$TMP/catalog.yaml" || fail "helm template -f test/deploy/values-catalog.yaml"
	env_is "$TMP/catalog.yaml" ACTIONS_CONFIG /etc/action-provider/actions.yaml || fail "ACTIONS_CONFIG does not name the mounted catalog"
	grep -qE '^        checksum/catalog: [0-9a-f]{64}$' "$TMP/catalog.yaml" || fail "no checksum/catalog annotation: a catalog change would not roll the pods"
	grep -qF 'secretName: unleash-admin-token' "$TMP/catalog.yaml" && grep -qF 'mountPath: /var/run/secrets/unleash' "$TMP/catalog.yaml" ||
		fail "secretMounts are not mounted"
	# The ConfigMap's actions.yaml, as the pod reads it, checked by the binary.
	awk '/^  actions.yaml: \|$/ {on=1; next} on && /^    / {print substr($0, 5); next} on {exit}' "$TMP/catalog.yaml" >"$TMP/actions.yaml"
	[[ -s $TMP/actions.yaml ]] || fail "no actions.yaml in the catalog ConfigMap"
	ACTIONS_CONFIG="$TMP/actions.yaml" "$TMP/bin/action-provider" lint examples/keptn/remediation.yaml >"$TMP/lint-catalog.log" 2>&1 ||
		fail "action-provider lint against the chart's catalog: $(cat "$TMP/lint-catalog.log")"
	ok "catalog: ConfigMap mounted at /etc/action-provider, ACTIONS_CONFIG set, checksum/catalog rolls the pods, secretMounts mounted"
	ok "action-provider lint examples/keptn/remediation.yaml against the rendered catalog: $(tail -1 "$TMP/lint-catalog.log")"
	printf 'actions:\n  - {name: scale, kind: scale, settings: {maxReplica: 3}}\n' >"$TMP/bad-actions.yaml"
	if ACTIONS_CONFIG="$TMP/bad-actions.yaml" "$TMP/bin/action-provider" lint examples/keptn/remediation.yaml >"$TMP/lint-bad.log" 2>&1; then
		fail "a catalog with an unknown setting was accepted"
	fi
	grep -qF 'actions[0] "scale": settings: unknown field "maxReplica"' "$TMP/lint-bad.log" ||
		fail "a bad catalog's error does not name the entry and field: $(cat "$TMP/lint-bad.log")"
	ok "a catalog with a typo stops the binary, naming file, entry and field: $(head -c 160 "$TMP/lint-bad.log")"
	must_fail "--set catalog.actions[0].kind=pager" "at '/catalog/actions/0/kind': value must be one of" \
		"${tpl[@]}" --set 'catalog.actions[0].name=x' --set 'catalog.actions[0].kind=pager'

	jobs_static_checks
	gitops_static_checks
	nats_static_checks
	observability_static_checks

	step "wrong values fail with a clear message"
	must_fail "--set rbac.scope=everything" "at '/rbac/scope': value must be one of 'cluster', 'namespaced'" \
		"${tpl[@]}" --set rbac.scope=everything
	must_fail "--set dryRun=maybe" "at '/dryRun': got string, want boolean" "${tpl[@]}" --set dryRun=maybe
	must_fail "--set logLevel=loud" "at '/logLevel': value must be one of" "${tpl[@]}" --set logLevel=loud
	must_fail "--set actionTimeout=5min" "at '/actionTimeout': '5min' does not match pattern" "${tpl[@]}" --set actionTimeout=5min
	must_fail "--set dryrun=true (a misspelt key)" "additional properties 'dryrun' not allowed" "${tpl[@]}" --set dryrun=true
	must_fail "the defaults (namespaced scope, no rbac.namespaces)" "rbac.namespaces is empty: the provider acts only where it is told to" \
		"$HELM" template "$RELEASE" chart/ -n "$NS" --kube-version "$KUBE_VERSION"
	must_fail "rbac.scope=cluster without allowedNamespaces or namespaceOptInLabel" "rbac.scope=cluster with neither allowedNamespaces nor namespaceOptInLabel: the provider would act nowhere" \
		"${tpl[@]}" --set rbac.scope=cluster
	must_fail "namespaceOptInLabel with rbac.scope=namespaced" "needs rbac.scope=cluster" \
		"${tpl[@]}" --set namespaceOptInLabel=keptn-action-provider.io/remediation=enabled
	must_fail "--set namespaceOptInLabel=remediation (no value)" "at '/namespaceOptInLabel': 'remediation' does not match pattern" \
		"${tpl[@]}" "${cls[@]}" --set namespaceOptInLabel=remediation
	must_fail "--set 'rbac.namespaces={Bad_NS}'" "at '/rbac/namespaces/0': 'Bad_NS' does not match pattern" \
		"${tpl[@]}" "${nsd[@]}" --set 'rbac.namespaces={Bad_NS}'
	must_fail "--set scale.minReplicas=5,scale.maxReplicas=2" "scale.maxReplicas (2) must not be below scale.minReplicas (5)" \
		"${tpl[@]}" --set scale.minReplicas=5 --set scale.maxReplicas=2
	must_fail "--set scale.maxStep=-1" "at '/scale/maxStep': minimum: got -1, want 0" "${tpl[@]}" --set scale.maxStep=-1
	must_fail "--set deletePods.maxPods=0" "at '/deletePods/maxPods': minimum: got 0, want 1" "${tpl[@]}" --set deletePods.maxPods=0
	must_fail "--set 'allowedNamespaces={sockshop-*\,kube-system}'" "at '/allowedNamespaces/0': 'sockshop-*,kube-system' does not match pattern" \
		"${tpl[@]}" --set 'allowedNamespaces={sockshop-*\,kube-system}'
	must_fail "--set cooldown=5min" "at '/cooldown': '5min' does not match pattern" "${tpl[@]}" --set cooldown=5min
	must_fail "--set verifyTimeout=5m (= actionTimeout)" "verifyTimeout (5m) must be below actionTimeout (5m)" \
		"${tpl[@]}" --set verifyTimeout=5m
	must_fail "--set terminationGracePeriodSeconds=30" "terminationGracePeriodSeconds (30) must be at least" \
		"${tpl[@]}" --set terminationGracePeriodSeconds=30
	must_fail "remote mode without a token Secret" "distributor.keptnApiTokenSecret is not" \
		"${tpl[@]}" --set distributor.keptnApiEndpoint=https://keptn.example.com/api
	must_fail "remote mode with 2 replicas" "replicaCount > 1 with distributor.keptnApiEndpoint" \
		"${tpl[@]}" --set distributor.keptnApiEndpoint=https://keptn.example.com/api \
		--set distributor.keptnApiTokenSecret=keptn-api-token --set replicaCount=2
}

# jobs_static_checks: job entries in the catalog (test/deploy/values-jobs.yaml)
# add exactly their rules, only where their Jobs run, in both RBAC scopes;
# catalogs without job entries add none.
jobs_static_checks() {
	local tpl=("$HELM" template "$RELEASE" chart/ -n "$NS" --kube-version "$KUBE_VERSION")
	local jobs=(-f test/deploy/values-jobs.yaml) f got

	step "job entries in the catalog: RBAC where their Jobs run, both scopes"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" "${jobs[@]}" --set 'rbac.namespaces={sockshop-production}' >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (values-jobs.yaml): $(cat "$TMP/lint.log")"
	ok "helm lint --strict chart/ -f test/deploy/values-jobs.yaml"
	# Namespaced: remediation-jobs is one of rbac.namespaces (its entry's
	# rules join that Role), batch-ops is not (a Role of its own).
	"${tpl[@]}" "${jobs[@]}" --set 'rbac.namespaces={sockshop-production,remediation-jobs}' >"$TMP/jobs-namespaced.yaml" ||
		fail "helm template -f test/deploy/values-jobs.yaml (namespaced)"
	kinds=$(grep -E '^kind: ' "$TMP/jobs-namespaced.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "ConfigMap=1,Deployment=1,Pod=1,Role=4,RoleBinding=4,Service=1,ServiceAccount=1" ]] ||
		fail "job entries, namespaced scope: renders $kinds"
	expect_rules_in "$TMP/jobs-namespaced.yaml" Role "$CLUSTER_NAME" sockshop-production "$WANT_RULES4$J_JOBS$J_LOG$J_SECRETS_TARGET"
	expect_rules_in "$TMP/jobs-namespaced.yaml" Role "$CLUSTER_NAME" remediation-jobs "$WANT_RULES4$J_JOBS$J_LOG$J_SECRETS_BOTH"
	expect_rules_in "$TMP/jobs-namespaced.yaml" Role "$JOBS_NAME" batch-ops "$J_JOBS$J_PODS$J_LOG$J_EVENTS"
	got=$(binding_in "$TMP/jobs-namespaced.yaml" "$JOBS_NAME" batch-ops)
	[[ $got == "Role/$JOBS_NAME ServiceAccount:$NS:$SA" ]] || fail "job entries, namespaced scope: RoleBinding $JOBS_NAME in batch-ops: '$got'"
	! grep -qE "^  namespace: (other-ns|sockshop-staging)$" "$TMP/jobs-namespaced.yaml" || fail "job entries, namespaced scope: RBAC outside the job namespaces"
	env_is "$TMP/jobs-namespaced.yaml" ALLOWED_NAMESPACES "sockshop-production,remediation-jobs,batch-ops" ||
		fail "job entries, namespaced scope: ALLOWED_NAMESPACES is not rbac.namespaces and then batch-ops"
	ok "namespaced scope (rbac.namespaces sockshop-production, remediation-jobs): $kinds"
	ok "  Role in sockshop-production: the rules, and create,get,watch,delete jobs; get pods/log; get secrets cache-admin, locust-secret (the entries without a namespace)"
	ok "  Role in remediation-jobs: the same, and secret jobs-token of the entry there; Role $JOBS_NAME in batch-ops (bound to $SA): create,get,watch,delete jobs; list pods; get pods/log; create events; no secrets"
	ok "  ALLOWED_NAMESPACES=sockshop-production,remediation-jobs,batch-ops (rbac.namespaces, then the job namespaces)"

	"${tpl[@]}" "${jobs[@]}" --set rbac.scope=cluster --set 'allowedNamespaces={*}' >"$TMP/jobs-cluster.yaml" ||
		fail "helm template -f test/deploy/values-jobs.yaml (cluster)"
	kinds=$(grep -E '^kind: ' "$TMP/jobs-cluster.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "ClusterRole=1,ClusterRoleBinding=1,ConfigMap=1,Deployment=1,Pod=1,Role=3,RoleBinding=3,Service=1,ServiceAccount=1" ]] ||
		fail "job entries, cluster scope: renders $kinds"
	expect_rules_in "$TMP/jobs-cluster.yaml" ClusterRole "$CLUSTER_NAME" "" "$WANT_RULES4$J_JOBS$J_LOG$J_SECRETS_TARGET$G_CLUSTER4"
	expect_rules_in "$TMP/jobs-cluster.yaml" Role "$JOBS_NAME" remediation-jobs "$J_JOBS$J_LOG$J_SECRETS_RJ"
	expect_rules_in "$TMP/jobs-cluster.yaml" Role "$JOBS_NAME" batch-ops "$J_JOBS$J_LOG"
	for f in remediation-jobs batch-ops; do
		got=$(binding_in "$TMP/jobs-cluster.yaml" "$JOBS_NAME" "$f")
		[[ $got == "Role/$JOBS_NAME ServiceAccount:$NS:$SA" ]] || fail "job entries, cluster scope: RoleBinding $JOBS_NAME in $f: '$got'"
	done
	env_is "$TMP/jobs-cluster.yaml" ALLOWED_NAMESPACES "*" || fail "job entries, cluster scope: ALLOWED_NAMESPACES is not allowedNamespaces"
	ok "cluster scope: $kinds"
	ok "  ClusterRole: the rules, and create,get,watch,delete jobs; get pods/log; get secrets cache-admin, locust-secret; get,list Flux's and Argo CD's owners"
	ok "  Role $JOBS_NAME in remediation-jobs: create,get,watch,delete jobs; get pods/log; get secrets jobs-token; in batch-ops: the same without secrets"

	# A job entry that references no Secret: no secrets rule at all.
	"${tpl[@]}" --set rbac.scope=cluster --set 'allowedNamespaces={*}' \
		--set-json 'catalog={"actions":[{"name":"j","kind":"job","settings":{"image":"busybox:1.37.0"}}]}' >"$TMP/jobs-nosecret.yaml" ||
		fail "helm template, a job entry without secrets"
	expect_rules_in "$TMP/jobs-nosecret.yaml" ClusterRole "$CLUSTER_NAME" "" "$WANT_RULES4$J_JOBS$J_LOG$G_CLUSTER4"
	# Never secrets without resourceNames, in any render.
	for f in "$TMP"/jobs-*.yaml; do
		awk '/^ *resources: \["secrets"\]$/ {getline n; if (n !~ /^ *resourceNames: \["[a-z0-9]/) bad = 1} END {exit bad}' "$f" ||
			fail "$f: a secrets rule without resourceNames"
	done
	# No job entry, no job rule: the defaults, and a catalog of other kinds.
	for f in default cluster namespaced catalog; do
		! grep -qE '^ *resources: \[("jobs"|"pods/log"|"secrets")\]$' "$TMP/$f.yaml" ||
			fail "$f render (no job entry) has a rule on jobs, pods/log or secrets"
	done
	ok "a job entry without secrets: no secrets rule; every secrets rule has resourceNames; without job entries (defaults, values-catalog.yaml) no rule on jobs, pods/log or secrets"
	# The catalog is one the binary loads.
	awk '/^  actions.yaml: \|$/ {on=1; next} on && /^    / {print substr($0, 5); next} on {exit}' "$TMP/jobs-cluster.yaml" >"$TMP/jobs-actions.yaml"
	ACTIONS_CONFIG="$TMP/jobs-actions.yaml" "$TMP/bin/action-provider" lint examples/keptn/remediation.yaml >"$TMP/lint-jobs.log" 2>&1 ||
		fail "action-provider lint against values-jobs.yaml's catalog: $(cat "$TMP/lint-jobs.log")"
	ok "action-provider lint examples/keptn/remediation.yaml against values-jobs.yaml's catalog: $(tail -1 "$TMP/lint-jobs.log")"
	must_fail "a job entry with settings.namespace=Bad_NS" "at '/catalog/actions/0/settings/namespace': 'Bad_NS' does not match pattern" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' \
		--set-json 'catalog={"actions":[{"name":"j","kind":"job","settings":{"image":"x","namespace":"Bad_NS"}}]}'
	must_fail "a job entry's secret without secretName" "at '/catalog/actions/0/settings/secrets/0': missing property 'secretName'" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' \
		--set-json 'catalog={"actions":[{"name":"j","kind":"job","settings":{"image":"x","secrets":[{"key":"token"}]}}]}'
}

# rules_in FILE KIND NAME NAMESPACE: the rules of that Role or ClusterRole
# ("" for no namespace) in FILE (helm template output), as rules4_of prints
# them; "!" marks a rule without a comment above it.
rules_in() {
	awk -v kind="kind: $2" -v name="  name: $3" -v ns="$4" '
		function val(s) { sub(/^[^:]*: /, "", s); gsub(/, /, ",", s); return s }
		function emit() { if (g != "") out = out mark g "|" r "|" rn "|" v ";"; g = r = rn = v = mark = "" }
		function done() { emit(); if (k && n && d == ns && inr != "") print out; k = n = 0; d = inr = out = prev = "" }
		/^---/ { done(); next }
		$0 == kind { k = 1 } $0 == name { n = 1 }
		/^  namespace: / { d = substr($0, 14) }
		/^rules:$/ { inr = 1; next }
		inr == 1 && /^[^ ]/ { emit(); inr = 2 }
		inr == 1 && /^  - apiGroups: / { emit(); g = val($0); if (prev !~ /^ *#/) mark = "!" }
		inr == 1 && /^    resources: / { r = val($0) }
		inr == 1 && /^    resourceNames: / { rn = val($0) }
		inr == 1 && /^    verbs: / { v = val($0) }
		{ prev = $0 }
		END { done() }' "$1"
}
# expect_rules_in FILE KIND NAME NAMESPACE WANT
expect_rules_in() {
	local got
	got=$(rules_in "$1" "$2" "$3" "$4")
	[[ $got == "$5" ]] || fail "$(basename "$1"): $2 $3${4:+ in $4} has rules '$got'; want exactly '$5'"
}
# binding_in FILE NAME NAMESPACE: the RoleBinding's roleRef and subjects.
binding_in() {
	awk -v name="  name: $2" -v ns="  namespace: $3" '
		/^---/ { if (k && n && d) print out; k = n = d = 0; out = ""; next }
		$0 == "kind: RoleBinding" { k = 1 } $0 == name { n = 1 } $0 == ns { d = 1 }
		/^  kind: Role$/ { out = "Role/" } /^  name: / && out == "Role/" { out = out substr($0, 9) }
		/^  - kind: ServiceAccount$/ { out = out " ServiceAccount:" }
		/^    name: / { sa = substr($0, 11) } /^    namespace: / { out = out substr($0, 16) ":" sa }
		END { if (k && n && d) print out }' "$1"
}

# gitops_static_checks: the GitOps gate's rules (ap.gitopsRules), and the
# gates' sections of the catalog (test/deploy/values-gitops.yaml) as the
# schema and the binary read them.
gitops_static_checks() {
	local tpl=("$HELM" template "$RELEASE" chart/ -n "$NS" --kube-version "$KUBE_VERSION")
	local gv=(-f test/deploy/values-jobs.yaml -f test/deploy/values-gitops.yaml) f got

	step "the gates' catalog sections; GitOps owners' RBAC, both scopes"
	# The defaults: cluster scope reads the owners everywhere, never updates
	# them; namespaced scope has no rule on them at all.
	expect_rules_in "$TMP/cluster.yaml" ClusterRole "$CLUSTER_NAME" "" "$WANT_RULES4$G_CLUSTER4"
	for f in default namespaced catalog; do
		! grep -qE '^ *- apiGroups: \[("kustomize.toolkit.fluxcd.io"|"helm.toolkit.fluxcd.io")' "$TMP/$f.yaml" &&
			! grep -qF 'resources: ["applications"]' "$TMP/$f.yaml" || fail "$f render (namespaced, no gitops namespaces) has a rule on a GitOps owner"
	done
	ok "defaults: the ClusterRole (cluster scope) has exactly the rules and get,list kustomizations, helmreleases, applications (no update: no suspend policy); namespaced scope has no rule on them"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" "${gv[@]}" --set 'rbac.namespaces={sockshop-production}' >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (values-gitops.yaml): $(cat "$TMP/lint.log")"
	"${tpl[@]}" "${gv[@]}" --set 'rbac.namespaces={sockshop-production}' >"$TMP/gitops-namespaced.yaml" ||
		fail "helm template -f values-gitops.yaml (namespaced)"
	kinds=$(grep -E '^kind: ' "$TMP/gitops-namespaced.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "ClusterRole=1,ClusterRoleBinding=1,ConfigMap=1,Deployment=1,Pod=1,Role=6,RoleBinding=6,Service=1,ServiceAccount=1" ]] ||
		fail "values-gitops.yaml, namespaced scope: renders $kinds"
	expect_rules_in "$TMP/gitops-namespaced.yaml" Role "$GITOPS_NAME" flux-system "$G_FLUX_NS4"
	expect_rules_in "$TMP/gitops-namespaced.yaml" Role "$GITOPS_NAME" argocd "$G_ARGO_NS4"
	expect_rules_in "$TMP/gitops-namespaced.yaml" ClusterRole "$GITOPS_NAME" "" "$G_LIST4"
	expect_rules_in "$TMP/gitops-namespaced.yaml" Role "$CLUSTER_NAME" sockshop-production "$WANT_RULES4$J_JOBS$J_LOG$J_SECRETS_TARGET"
	for f in flux-system argocd; do
		got=$(binding_in "$TMP/gitops-namespaced.yaml" "$GITOPS_NAME" "$f")
		[[ $got == "Role/$GITOPS_NAME ServiceAccount:$NS:$SA" ]] || fail "values-gitops.yaml: RoleBinding $GITOPS_NAME in $f: '$got'"
	done
	env_is "$TMP/gitops-namespaced.yaml" ALLOWED_NAMESPACES "sockshop-production,batch-ops,remediation-jobs" ||
		fail "values-gitops.yaml: the GitOps namespaces changed ALLOWED_NAMESPACES"
	ok "values-gitops.yaml (gitops.policy suspend), namespaced scope: $kinds"
	ok "  Role $GITOPS_NAME in flux-system (rbac.gitops.fluxNamespaces): get,update kustomizations, helmreleases; in argocd (gitops.argocdNamespaces): get,list,update applications"
	ok "  ClusterRole $GITOPS_NAME: list kustomizations, helmreleases (Maintain finds due suspensions in all namespaces); ALLOWED_NAMESPACES unchanged"
	"${tpl[@]}" "${gv[@]}" --set rbac.scope=cluster --set 'allowedNamespaces={*}' >"$TMP/gitops-cluster.yaml" ||
		fail "helm template -f values-gitops.yaml (cluster)"
	expect_rules_in "$TMP/gitops-cluster.yaml" ClusterRole "$CLUSTER_NAME" "" "$WANT_RULES4$J_JOBS$J_LOG$J_SECRETS_TARGET$G_CLUSTER_SUSPEND4"
	! grep -qE "^  (name: $GITOPS_NAME|namespace: (flux-system|argocd))$" "$TMP/gitops-cluster.yaml" ||
		fail "values-gitops.yaml, cluster scope: a Role in flux-system or argocd, or a ClusterRole $GITOPS_NAME"
	ok "values-gitops.yaml, cluster scope: the ClusterRole gets get,list,update kustomizations, helmreleases, applications; no Role in flux-system or argocd"
	# An entry's guardrails.gitops: suspend grants update as the section does.
	"${tpl[@]}" --set rbac.scope=cluster --set 'allowedNamespaces={*}' \
		--set-json 'catalog={"actions":[{"name":"scale","kind":"scale","guardrails":{"gitops":"suspend","approval":"never"},"target":{"override":["name"]}}],"gitops":{"policy":"warn"}}' \
		>"$TMP/gitops-entry.yaml" || fail "helm template, an entry with guardrails.gitops: suspend"
	expect_rules_in "$TMP/gitops-entry.yaml" ClusterRole "$CLUSTER_NAME" "" "$WANT_RULES4$G_CLUSTER_SUSPEND4"
	ok "an entry's guardrails.gitops: suspend (gitops.policy warn) grants update too"
	# The binary reads the sections the schema accepts.
	awk '/^  actions.yaml: \|$/ {on=1; next} on && /^    / {print substr($0, 5); next} on {exit}' "$TMP/gitops-namespaced.yaml" >"$TMP/gitops-actions.yaml"
	for f in freeze alertHold approval gitops budget; do grep -q "^$f:" "$TMP/gitops-actions.yaml" || fail "the rendered catalog has no $f section"; done
	ACTIONS_CONFIG="$TMP/gitops-actions.yaml" "$TMP/bin/action-provider" lint examples/keptn/remediation.yaml >"$TMP/lint-gitops.log" 2>&1 ||
		fail "action-provider lint against values-gitops.yaml's catalog: $(cat "$TMP/lint-gitops.log")"
	ok "action-provider lint against the catalog with freeze, alertHold, approval, gitops, budget sections: $(tail -1 "$TMP/lint-gitops.log")"
	must_fail "a suspend policy in namespaced scope with no GitOps namespace" "the catalog's gitops policy is suspend" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' --set-json 'catalog={"gitops":{"policy":"suspend"}}'
	must_fail "guardrails.gitops=pause" "at '/catalog/actions/0/guardrails/gitops': value must be one of 'refuse', 'warn', 'suspend'" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' --set-json 'catalog={"actions":[{"name":"s","kind":"scale","guardrails":{"gitops":"pause"}}]}'
	must_fail "guardrails.approval=always" "at '/catalog/actions/0/guardrails/approval': value must be one of 'required', 'never'" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' --set-json 'catalog={"actions":[{"name":"s","kind":"scale","guardrails":{"approval":"always"}}]}'
	must_fail "target.override=[image]" "at '/catalog/actions/0/target/override/0': value must be one of" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' --set-json 'catalog={"actions":[{"name":"s","kind":"scale","target":{"override":["image"]}}]}'
	must_fail "gitops.polcy (a misspelt key)" "at '/catalog/gitops': additional properties 'polcy' not allowed" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' --set-json 'catalog={"gitops":{"polcy":"warn"}}'
	must_fail "budget.max=0" "at '/catalog/budget/max': minimum: got 0, want 1" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' --set-json 'catalog={"budget":{"max":0}}'
	must_fail "--set 'rbac.gitops.fluxNamespaces={Flux}'" "at '/rbac/gitops/fluxNamespaces/0': 'Flux' does not match pattern" \
		"${tpl[@]}" --set 'rbac.namespaces={sockshop-production}' --set 'rbac.gitops.fluxNamespaces={Flux}'
}

# nats_static_checks: the chart with transport=nats, and the default
# (sidecar) render independent of every new value.
# The Grafana dashboard's ConfigMap and the PrometheusRule (both off by
# default: the default render's kinds above have neither): the ConfigMap
# carries chart/dashboards' JSON byte for byte, with the sidecar's label; the
# PrometheusRule's spec is a rule file that `promtool check rules` accepts
# and that passes test/promtool's unit tests (the same ones make test runs
# on its own render of chart/files/prometheus-rules.yaml); values reach it.
observability_static_checks() {
	local tpl=("$HELM" template "$RELEASE" chart/ -n "$NS" --kube-version "$KUBE_VERSION" --set 'rbac.namespaces={sockshop-production}')
	local on=(--set grafanaDashboard.enabled=true --set prometheusRule.enabled=true) promtool dir f

	step "Grafana dashboard and PrometheusRule (promtool)"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" --set 'rbac.namespaces={sockshop-production}' "${on[@]}" >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (grafanaDashboard, prometheusRule): $(cat "$TMP/lint.log")"
	"${tpl[@]}" "${on[@]}" >"$TMP/observability.yaml" || fail "helm template --set grafanaDashboard.enabled=true,prometheusRule.enabled=true"
	kinds=$(grep -E '^kind: ' "$TMP/observability.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "ConfigMap=1,Deployment=1,Pod=1,PrometheusRule=1,Role=2,RoleBinding=2,Service=1,ServiceAccount=1" ]] ||
		fail "with the dashboard and the rules: $kinds"

	"${tpl[@]}" "${on[@]}" --show-only templates/grafana-dashboard.yaml >"$TMP/dashboard-cm.yaml" || fail "helm template --show-only templates/grafana-dashboard.yaml"
	grep -qxF "  name: $RELEASE-dashboard" "$TMP/dashboard-cm.yaml" && grep -qxF "  namespace: $NS" "$TMP/dashboard-cm.yaml" ||
		fail "the dashboard's ConfigMap is not $RELEASE-dashboard in $NS: $(head -n 8 "$TMP/dashboard-cm.yaml")"
	grep -qxF '    grafana_dashboard: "1"' "$TMP/dashboard-cm.yaml" || fail "the dashboard's ConfigMap lacks the sidecar's label grafana_dashboard: \"1\""
	awk '/^  keptn-action-provider.json: \|-$/ {on=1; next} on && /^    / {print substr($0, 5); next} on && /^$/ {print; next} on {exit}' \
		"$TMP/dashboard-cm.yaml" >"$TMP/dashboard.json"
	cmp -s chart/dashboards/keptn-action-provider.json "$TMP/dashboard.json" ||
		fail "the ConfigMap's keptn-action-provider.json is not chart/dashboards/keptn-action-provider.json: $(diff chart/dashboards/keptn-action-provider.json "$TMP/dashboard.json" | head -n 10)"
	ok "grafanaDashboard.enabled: ConfigMap $RELEASE-dashboard in $NS, label grafana_dashboard: \"1\", keptn-action-provider.json = chart/dashboards/keptn-action-provider.json ($(grep -c '"type": "timeseries"\|"type": "stat"' "$TMP/dashboard.json") panels)"
	"${tpl[@]}" "${on[@]}" --set grafanaDashboard.sidecarLabel=grafana.example.com/dashboard --set grafanaDashboard.sidecarLabelValue=keptn \
		--set grafanaDashboard.namespace=monitoring --set grafanaDashboard.annotations.grafana_folder=Keptn \
		--show-only templates/grafana-dashboard.yaml >"$TMP/dashboard-cm2.yaml" || fail "helm template (dashboard values)"
	grep -qxF '    grafana.example.com/dashboard: "keptn"' "$TMP/dashboard-cm2.yaml" && grep -qxF '  namespace: monitoring' "$TMP/dashboard-cm2.yaml" &&
		grep -qxF '    grafana_folder: Keptn' "$TMP/dashboard-cm2.yaml" && ! grep -qF 'grafana_dashboard:' "$TMP/dashboard-cm2.yaml" ||
		fail "the dashboard values do not reach the ConfigMap: $(head -n 20 "$TMP/dashboard-cm2.yaml")"
	ok "grafanaDashboard.sidecarLabel, sidecarLabelValue, namespace and annotations reach the ConfigMap (label grafana.example.com/dashboard: \"keptn\" in monitoring, grafana_folder: Keptn)"

	promtool=$("$ROOT/test/promtool/promtool.sh") || fail "test/promtool/promtool.sh could not install promtool"
	dir="$TMP/promtool"
	mkdir -p "$dir"
	"${tpl[@]}" "${on[@]}" --show-only templates/prometheusrule.yaml >"$TMP/prometheusrule.yaml" || fail "helm template --show-only templates/prometheusrule.yaml"
	grep -qxF "  name: $RELEASE" "$TMP/prometheusrule.yaml" && grep -qxF "  namespace: $NS" "$TMP/prometheusrule.yaml" ||
		fail "the PrometheusRule is not $RELEASE in $NS"
	# Its spec, one level up, is a rule file.
	awk '/^spec:$/ {on=1; next} on {print substr($0, 3)}' "$TMP/prometheusrule.yaml" >"$dir/rules.yaml"
	"$promtool" check rules "$dir/rules.yaml" >"$TMP/promtool.log" 2>&1 || fail "promtool check rules (the chart's PrometheusRule): $(cat "$TMP/promtool.log")"
	for f in test/promtool/*.test.yaml; do cp "$f" "$dir/"; done
	(cd "$dir" && "$promtool" test rules ./*.test.yaml) >"$TMP/promtool.log" 2>&1 ||
		fail "promtool test rules (test/promtool/*.test.yaml on the chart's PrometheusRule): $(cat "$TMP/promtool.log")"
	ok "prometheusRule.enabled: PrometheusRule $RELEASE in $NS, $(grep -c -- '- alert: ' "$dir/rules.yaml") alerts; promtool check rules and promtool test rules test/promtool/*.test.yaml pass on its spec ($("$promtool" --version 2>&1 | head -n1))"
	"${tpl[@]}" "${on[@]}" --set prometheusRule.labels.release=kube-prometheus-stack --set prometheusRule.alerts.queueFull.for=17m \
		--set prometheusRule.alerts.actionsFailing.failures=7 --set prometheusRule.alerts.noReplicaReady.severity=page \
		--set prometheusRule.runbookURL=https://wiki.example.com/keptn \
		--show-only templates/prometheusrule.yaml >"$TMP/prometheusrule2.yaml" || fail "helm template (prometheusRule values)"
	for want in '    release: kube-prometheus-stack' '          for: 17m' '            severity: page' \
		'            runbook_url: https://wiki.example.com/keptn#actionprovidernoreplicaready'; do
		grep -qxF -- "$want" "$TMP/prometheusrule2.yaml" || fail "prometheusRule values: the render lacks '$want'"
	done
	grep -qF 'status="errored"}[30m])) >= 7' "$TMP/prometheusrule2.yaml" || fail "prometheusRule.alerts.actionsFailing.failures does not reach the rule"
	awk '/^spec:$/ {on=1; next} on {print substr($0, 3)}' "$TMP/prometheusrule2.yaml" >"$dir/rules2.yaml"
	"$promtool" check rules "$dir/rules2.yaml" >"$TMP/promtool.log" 2>&1 || fail "promtool check rules (with values): $(cat "$TMP/promtool.log")"
	ok "prometheusRule values reach the rules (labels, for, failures, severity, runbookURL), and promtool accepts them"
	must_fail "--set prometheusRule.alerts.queueFull.for=10min" "at '/prometheusRule/alerts/queueFull/for': '10min' does not match pattern" \
		"${tpl[@]}" "${on[@]}" --set prometheusRule.alerts.queueFull.for=10min
	must_fail "--set prometheusRule.alerts.queueFul.for=10m (a misspelt alert)" "additional properties 'queueFul' not allowed" \
		"${tpl[@]}" "${on[@]}" --set prometheusRule.alerts.queueFul.for=10m
}

nats_static_checks() {
	local tpl=("$HELM" template "$RELEASE" chart/ -n "$NS" --kube-version "$KUBE_VERSION" --set 'rbac.namespaces={sockshop-production}')
	local dep=(--show-only templates/deployment.yaml) want got

	step "transport: sidecar (default) and nats (no sidecar)"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" --set transport=nats --set 'rbac.namespaces={sockshop-production}' >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (transport=nats): $(cat "$TMP/lint.log")"
	"$HELM" lint --strict chart/ -n "$NS" --kube-version "$KUBE_VERSION" -f test/deploy/values-nats.yaml >"$TMP/lint.log" 2>&1 ||
		fail "helm lint (values-nats.yaml): $(cat "$TMP/lint.log")"
	ok "helm lint --strict chart/ --set transport=nats, and -f test/deploy/values-nats.yaml (TLS, credentials, NetworkPolicy, PDB, 2 replicas)"

	# The sidecar: what it was before transport existed. Setting it, or any
	# nats value, changes nothing of the default render.
	"${tpl[@]}" --set transport=sidecar >"$TMP/sidecar.yaml" || fail "helm template --set transport=sidecar"
	cmp -s "$TMP/default.yaml" "$TMP/sidecar.yaml" || fail "--set transport=sidecar renders differently from the default: $(diff "$TMP/default.yaml" "$TMP/sidecar.yaml" | head -n 20)"
	"${tpl[@]}" --set nats.url=nats://elsewhere:4222 --set nats.queueGroup=other --set nats.bufferBytes=2048 \
		--set nats.maxEventBytes=8192 --set nats.tlsSecret=t --set nats.tlsClientCert=true --set nats.credentialsSecret=c \
		--set 'networkPolicy.keptn.natsPorts={4223}' >"$TMP/sidecar-nats-values.yaml" || fail "helm template (sidecar with nats values)"
	cmp -s "$TMP/default.yaml" "$TMP/sidecar-nats-values.yaml" ||
		fail "the nats values change the sidecar render: $(diff "$TMP/default.yaml" "$TMP/sidecar-nats-values.yaml" | head -n 20)"
	got=$(containers_of "$TMP/default.yaml")
	[[ $got == "action-provider distributor" ]] || fail "default render: containers '$got', want 'action-provider distributor'"
	! grep -qE -- '- name: (TRANSPORT|NATS_[A-Z_]+|HEARTBEAT_PERIOD)$' "$TMP/default.yaml" ||
		fail "default render sets $(grep -oE -- '- name: (TRANSPORT|NATS_[A-Z_]+|HEARTBEAT_PERIOD)$' "$TMP/default.yaml" | head -n1)"
	{ grep -qF 'terminationGracePeriodSeconds: 90' "$TMP/default.yaml" && grep -qF 'command: ["/bin/sleep", "75"]' "$TMP/default.yaml"; } ||
		fail "default render: not the sidecar's grace period 90 and preStop sleep 75"
	ok "sidecar (default): the same render with --set transport=sidecar and with every nats value set; containers action-provider + distributor, no TRANSPORT, NATS_* or HEARTBEAT_PERIOD (the binary's defaults: http, 10s), grace period 90, preStop sleep 75"

	"${tpl[@]}" --set transport=nats >"$TMP/nats.yaml" || fail "helm template --set transport=nats"
	kinds=$(grep -E '^kind: ' "$TMP/nats.yaml" | sort | uniq -c | awk '{printf "%s%s=%s", sep, $3, $1; sep=","}')
	[[ $kinds == "Deployment=1,Pod=1,Role=2,RoleBinding=2,Service=1,ServiceAccount=1" ]] ||
		fail "transport=nats renders $kinds"
	leases_role_in_ns "$TMP/nats.yaml" || fail "transport=nats: no Role + RoleBinding $LEASES_NAME in $NS"
	got=$(containers_of "$TMP/nats.yaml")
	[[ $got == "action-provider" ]] || fail "transport=nats: containers '$got', want only action-provider"
	for want in TRANSPORT=nats NATS_URL=nats://keptn-nats NATS_QUEUE_GROUP=action-provider NATS_BUFFER_BYTES=8388608 \
		MAX_EVENT_BYTES=65536 OPS_PORT=8090 EVENTBROKER_RETRY_TIMEOUT=2m SANDBOX=false; do
		env_is "$TMP/nats.yaml" "${want%%=*}" "${want#*=}" || fail "transport=nats: ${want%%=*} is not ${want#*=}"
	done
	for want in RCV_HOST RCV_PORT RCV_PATH EVENTBROKER MAX_BODY_BYTES PUBSUB_URL PUBSUB_GROUP API_PROXY_PORT K8S_DEPLOYMENT_NAME \
		NATS_TLS_CA NATS_TLS_CERT NATS_TLS_KEY NATS_CREDENTIALS HEARTBEAT_PERIOD; do
		! grep -qE -- "- name: $want\$" "$TMP/nats.yaml" || fail "transport=nats: the pod still sets $want"
	done
	! grep -qE 'preStop|distributor|/bin/sleep|nats-tls|nats-creds' "$TMP/nats.yaml" ||
		fail "transport=nats: $(grep -m1 -E 'preStop|distributor|/bin/sleep|nats-tls|nats-creds' "$TMP/nats.yaml")"
	grep -qF 'terminationGracePeriodSeconds: 90' "$TMP/nats.yaml" ||
		fail "transport=nats: grace period $(grep -o 'terminationGracePeriodSeconds: [0-9]*' "$TMP/nats.yaml"), want 60 + 2 x 10 + 10 = 90"
	ok "transport=nats: $kinds; one container (action-provider), TRANSPORT=nats, NATS_URL=nats://keptn-nats, NATS_QUEUE_GROUP=action-provider, NATS_BUFFER_BYTES, MAX_EVENT_BYTES=65536; no distributor, preStop, RCV_*, EVENTBROKER, MAX_BODY_BYTES, PUBSUB_*; grace period 90 = 60 + 2 x 10 + 10"
	"${tpl[@]}" "${dep[@]}" --set transport=nats --set shutdownGraceSeconds=120 --set shutdownFlushSeconds=20 \
		--set heartbeatPeriod=3s >"$TMP/nats-values.yaml" || fail "helm template --set transport=nats with values"
	grep -qF 'terminationGracePeriodSeconds: 170' "$TMP/nats-values.yaml" ||
		fail "transport=nats: the grace period does not follow shutdownGraceSeconds/shutdownFlushSeconds (want 120 + 2 x 20 + 10 = 170)"
	env_is "$TMP/nats-values.yaml" HEARTBEAT_PERIOD 3s || fail "transport=nats: heartbeatPeriod does not reach HEARTBEAT_PERIOD"
	"${tpl[@]}" "${dep[@]}" --set heartbeatPeriod=45s >"$TMP/sidecar-heartbeat.yaml" || fail "helm template --set heartbeatPeriod=45s"
	env_is "$TMP/sidecar-heartbeat.yaml" HEARTBEAT_PERIOD 45s || fail "sidecar: heartbeatPeriod does not reach HEARTBEAT_PERIOD"
	"${tpl[@]}" "${dep[@]}" --set transport=nats --set terminationGracePeriodSeconds=85 >"$TMP/nats-grace.yaml" ||
		fail "transport=nats: terminationGracePeriodSeconds=85 (= 60 + 2 x 10 + 5) refused"
	grep -qF 'terminationGracePeriodSeconds: 85' "$TMP/nats-grace.yaml" || fail "transport=nats: terminationGracePeriodSeconds=85 not kept"
	ok "transport=nats: grace period 170 with shutdownGraceSeconds=120, shutdownFlushSeconds=20; 85 set by hand is kept; heartbeatPeriod -> HEARTBEAT_PERIOD in both transports (3s, 45s)"

	"${tpl[@]}" -f test/deploy/values-nats.yaml >"$TMP/nats-everything.yaml" || fail "helm template -f test/deploy/values-nats.yaml"
	for want in "NATS_URL=tls://keptn-nats.keptn.svc:4222, tls://keptn-nats-1.keptn.svc:4222" NATS_QUEUE_GROUP=remediation \
		NATS_BUFFER_BYTES=16777216 MAX_EVENT_BYTES=131072 HEARTBEAT_PERIOD=5s \
		NATS_TLS_CA=/var/run/secrets/nats/tls/ca.crt NATS_TLS_CERT=/var/run/secrets/nats/tls/tls.crt \
		NATS_TLS_KEY=/var/run/secrets/nats/tls/tls.key NATS_CREDENTIALS=/var/run/secrets/nats/creds/nats.creds; do
		env_is "$TMP/nats-everything.yaml" "${want%%=*}" "${want#*=}" || fail "values-nats.yaml: ${want%%=*} is not ${want#*=}"
	done
	for want in 'nats-tls|/var/run/secrets/nats/tls' 'nats-creds|/var/run/secrets/nats/creds'; do
		grep -A2 -F -- "- name: ${want%%|*}" "$TMP/nats-everything.yaml" | grep -qF "mountPath: ${want#*|}" ||
			fail "values-nats.yaml: volume ${want%%|*} is not mounted at ${want#*|}"
		grep -A2 -F -- "- name: ${want%%|*}" "$TMP/nats-everything.yaml" | grep -qF "readOnly: true" ||
			fail "values-nats.yaml: volume ${want%%|*} is not read-only"
	done
	got=$(awk '/^        - name: nats-(tls|creds)$/ {on=1} on && /secretName:|key:/ {printf "%s ", $0} on && /^        - name: kube-api-access$/ {on=0}' "$TMP/nats-everything.yaml" | tr -s ' ')
	[[ $got == " secretName: nats-client-tls - {key: ca.crt, path: ca.crt} - {key: tls.crt, path: tls.crt} - {key: tls.key, path: tls.key} secretName: nats-user - {key: nats.creds, path: nats.creds} " ]] ||
		fail "values-nats.yaml: the Secret volumes are '$got'"
	grep -qF 'terminationGracePeriodSeconds: 50' "$TMP/nats-everything.yaml" || fail "values-nats.yaml: grace period is not 30 + 2 x 5 + 10 = 50"
	got=$(awk '/^kind: NetworkPolicy$/ {on=1} on && /^---/ {on=0} on' "$TMP/nats-everything.yaml" | grep -A8 -F "Keptn's NATS" | grep -oE 'port: [0-9]+' | tr '\n' ' ')
	[[ $got == "port: 4222 " ]] || fail "values-nats.yaml: the NetworkPolicy's egress to Keptn's namespace is on '$got', want 4222 only"
	! grep -qF 'port: 8080, protocol' "$TMP/nats-everything.yaml" || fail "values-nats.yaml: the NetworkPolicy still opens shipyard-controller's 8080"
	ok "values-nats.yaml: NATS_URL (two tls:// servers), NATS_QUEUE_GROUP, NATS_BUFFER_BYTES, MAX_EVENT_BYTES, HEARTBEAT_PERIOD; Secrets nats-client-tls (ca.crt, tls.crt, tls.key) and nats-user (nats.creds) mounted read-only under /var/run/secrets/nats as NATS_TLS_CA/CERT/KEY, NATS_CREDENTIALS; grace period 50; NetworkPolicy egress to keptn on 4222 only"

	must_fail "--set transport=grpc" "at '/transport': value must be one of 'sidecar', 'nats'" "${tpl[@]}" --set transport=grpc
	must_fail "transport=nats with distributor.keptnApiEndpoint (remote mode)" "transport=nats does not work with distributor.keptnApiEndpoint" \
		"${tpl[@]}" --set transport=nats --set distributor.keptnApiEndpoint=https://keptn.example.com/api \
		--set distributor.keptnApiTokenSecret=keptn-api-token
	must_fail "transport=nats with distributor.projectFilter" "distributor.projectFilter set with transport=nats" \
		"${tpl[@]}" --set transport=nats --set distributor.projectFilter=sockshop
	must_fail "transport=nats, nats.tlsClientCert without nats.tlsSecret" "nats.tlsClientCert=true needs nats.tlsSecret" \
		"${tpl[@]}" --set transport=nats --set nats.tlsClientCert=true
	must_fail "--set nats.url=http://keptn-nats" "at '/nats/url': 'http://keptn-nats' does not match pattern" \
		"${tpl[@]}" --set transport=nats --set nats.url=http://keptn-nats
	must_fail "--set nats.queueGroup=''" "at '/nats/queueGroup': '' does not match pattern" \
		"${tpl[@]}" --set transport=nats --set nats.queueGroup=
	must_fail "--set nats.bufferBytes=100" "at '/nats/bufferBytes': minimum: got 100, want 1,024" \
		"${tpl[@]}" --set transport=nats --set nats.bufferBytes=100
	must_fail "--set nats.tls=true (a misspelt key)" "at '/nats': additional properties 'tls' not allowed" \
		"${tpl[@]}" --set transport=nats --set nats.tls=true
	must_fail "--set heartbeatPeriod=10sec" "at '/heartbeatPeriod': '10sec' does not match pattern" "${tpl[@]}" --set heartbeatPeriod=10sec
	must_fail "--set heartbeatPeriod=0s" "heartbeatPeriod (0s) must be a positive duration" "${tpl[@]}" --set heartbeatPeriod=0s
	must_fail "transport=nats, --set terminationGracePeriodSeconds=84" "terminationGracePeriodSeconds (84) must be at least 85 with transport=nats" \
		"${tpl[@]}" --set transport=nats --set terminationGracePeriodSeconds=84
}

# containers_of FILE: the names of the Deployment's containers in FILE.
containers_of() {
	awk '/^      containers:$/ {on=1; next} /^      [a-zA-Z]/ {on=0} on && /^        - name: / {printf "%s%s", sep, $3; sep=" "}' "$1"
}

# leases_role_in_ns FILE: FILE (helm template output) has the Role and the
# RoleBinding $LEASES_NAME in namespace $NS, the Role with exactly the rules
# on leases.
leases_role_in_ns() {
	local kind
	for kind in Role RoleBinding; do
		awk -v k="kind: $kind" -v n="  name: $LEASES_NAME" -v ns="  namespace: $NS" '
			/^---/ { if (hit_k && hit_n && hit_ns) found = 1; hit_k = hit_n = hit_ns = 0 }
			$0 == k { hit_k = 1 } $0 == n { hit_n = 1 } $0 == ns { hit_ns = 1 }
			END { if (hit_k && hit_n && hit_ns) found = 1; exit !found }' "$1" || return 1
	done
	grep -A2 -F 'apiGroups: ["coordination.k8s.io"]' "$1" | grep -qF 'verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]'
}

# env_is FILE NAME VALUE: the provider container's variable NAME is VALUE.
env_is() { grep -A1 -F -- "- name: $2" "$1" | grep -qxF -- "              value: \"$3\""; }

# -------------------------------------------------------------- live part ---

kc() { kubectl "$@"; }

# rules_of KIND NAME [NAMESPACE] -> the rules as WANT_RULES spells them.
rules_of() {
	local args=("$1" "$2")
	[[ -z ${3:-} ]] || args+=(-n "$3")
	kc get "${args[@]}" -o jsonpath='{range .rules[*]}{.apiGroups}|{.resources}|{.verbs};{end}'
}
# expect_rules KIND NAME [NAMESPACE [MORE]]: exactly WANT_RULES, and MORE
# after them (the GitOps rules of the chart's ClusterRole).
expect_rules() {
	local got more=${4:-}
	got=$(rules_of "$1" "$2" "${3:-}") || fail "cannot read $1 $2"
	[[ $got == "$WANT_RULES$more" ]] || fail "$1 $2${3:+ in $3} has rules $got; want exactly $WANT_RULES$more"
	ok "$1 $2${3:+ (namespace $3)}: exactly get,list,patch,watch deployments,statefulsets,daemonsets; get,update their scale; get,list,watch replicasets; list controllerrevisions; get,list,watch pods; create pods/eviction, events; list poddisruptionbudgets; get,list,update horizontalpodautoscalers; get,list,patch,watch rollouts; patch rollouts/status; get,update rollouts/scale; list,patch scaledobjects${more:+; get,list Flux's and Argo CD's owners}"
}
# expect_lease_rules NAME NAMESPACE: Role NAME (and its RoleBinding to
# SA_NAME) has exactly WANT_LEASE_RULES.
expect_lease_rules() {
	local got sa=$3
	got=$(rules_of role "$1" "$2") || fail "cannot read role $1 in $2"
	[[ $got == "$WANT_LEASE_RULES" ]] || fail "role $1 in $2 has rules $got; want exactly $WANT_LEASE_RULES"
	got=$(kc get rolebinding "$1" -n "$2" -o jsonpath='{.roleRef.kind}/{.roleRef.name} {range .subjects[*]}{.kind}:{.namespace}:{.name}{end}') ||
		fail "cannot read rolebinding $1 in $2"
	[[ $got == "Role/$1 ServiceAccount:$2:$sa" ]] || fail "rolebinding $1 in $2: $got"
	ok "role $1 (namespace $2, bound to $sa): exactly get,list,watch,create,update,patch,delete leases; create events"
}

# rules4_of KIND NAME [NAMESPACE] -> the rules as WANT_RULES4 spells them
# (with resourceNames).
rules4_of() {
	local args=("$1" "$2")
	[[ -z ${3:-} ]] || args+=(-n "$3")
	kc get "${args[@]}" -o jsonpath='{range .rules[*]}{.apiGroups}|{.resources}|{.resourceNames}|{.verbs};{end}'
}
# expect_rules4 KIND NAME NAMESPACE|"" WANT DESCRIPTION: exactly WANT.
expect_rules4() {
	local got
	got=$(rules4_of "$1" "$2" "$3") || fail "cannot read $1 $2"
	[[ $got == "$4" ]] || fail "$1 $2${3:+ in $3} has rules $got; want exactly $4"
	ok "$1 $2${3:+ (namespace $3)}: exactly $5"
}
# expect_binding NAME NAMESPACE: RoleBinding NAME binds Role NAME to the
# chart's ServiceAccount.
expect_binding() {
	local got
	got=$(kc get rolebinding "$1" -n "$2" -o jsonpath='{.roleRef.kind}/{.roleRef.name} {range .subjects[*]}{.kind}:{.namespace}:{.name}{end}') ||
		fail "cannot read rolebinding $1 in $2"
	[[ $got == "Role/$1 ServiceAccount:$NS:$SA" ]] || fail "rolebinding $1 in $2: $got"
}

# can USER yes|no VERB RESOURCE NAMESPACE|--all [SUBRESOURCE]
can() {
	local user=$1 want=$2 verb=$3 res=$4 ns=$5 sub=${6:-} got
	local args=(auth can-i "$verb" "$res" --as "$user")
	if [[ $ns == --all ]]; then args+=(--all-namespaces); else args+=(-n "$ns"); fi
	[[ -z $sub ]] || args+=(--subresource "$sub")
	got=$(kc "${args[@]}" 2>/dev/null || true)
	local what="$verb $res${sub:+/$sub} in ${ns/--all/all namespaces}"
	[[ $got == "$want" ]] || fail "can-i as $user: $what: got '$got', want '$want'"
	printf '   ok  can-i %-3s %s\n' "$want" "$what"
	echo "can-i $want $what" >>"$TMP/checks"
}

# can_all USER: the checks of can, one a line on stdin ("yes|no VERB RESOURCE
# NAMESPACE|--all [SUBRESOURCE]"), asked concurrently (12 at a time), then
# checked and reported in order.
can_all() {
	local user=$1 dir line want verb res ns sub i=0 got what
	local -a lines pids args
	mapfile -t lines
	dir=$(mktemp -d "$TMP/can.XXXXXX")
	for line in "${lines[@]}"; do
		read -r want verb res ns sub <<<"$line"
		args=(auth can-i "$verb" "$res" --as "$user")
		if [[ $ns == --all ]]; then args+=(--all-namespaces); else args+=(-n "$ns"); fi
		[[ -z $sub ]] || args+=(--subresource "$sub")
		{ kc "${args[@]}" >"$dir/$i" 2>/dev/null || true; } &
		pids+=($!)
		i=$((i + 1))
		if ((${#pids[@]} == 12)); then
			wait "${pids[@]}"
			pids=()
		fi
	done
	((${#pids[@]} == 0)) || wait "${pids[@]}"
	i=0
	for line in "${lines[@]}"; do
		read -r want verb res ns sub <<<"$line"
		got=$(<"$dir/$i")
		what="$verb $res${sub:+/$sub} in ${ns/--all/all namespaces}"
		[[ $got == "$want" ]] || fail "can-i as $user: $what: got '$got', want '$want'"
		printf '   ok  can-i %-3s %s\n' "$want" "$what"
		echo "can-i $want $what" >>"$TMP/checks"
		i=$((i + 1))
	done
	rm -rf "$dir"
}

# What the provider may do in any scope: only what the code calls.
can_matrix_common() {
	local u=$1 p=sockshop-production r verb
	say "RBAC as $u (kubectl auth can-i --as)"
	# Asked concurrently (can_all), reported in order.
	{
		for r in deployments statefulsets daemonsets; do
			echo yes get "$r" "$p"
			echo yes patch "$r" "$p"
			echo yes watch "$r" "$p" # the approval gate, the rollout's verification
			echo yes list "$r" "$p" # the rollout's verification (by name)
		done
		for r in deployments statefulsets; do
			echo yes get "$r" "$p" scale
			echo yes update "$r" "$p" scale
			echo no patch "$r" "$p" scale
		done
		echo yes list replicasets "$p"
		echo yes watch replicasets "$p" # the rollout's verification
		echo yes get replicasets "$p" # an Argo Rollout's stable ReplicaSet
		echo yes list controllerrevisions "$p"
		echo yes get pods "$p"
		echo yes list pods "$p"
		echo yes watch pods "$p" # the rollout's verification
		echo yes create pods "$p" eviction
		echo yes create events "$p"
		echo yes list poddisruptionbudgets.policy "$p"
		for verb in get list update; do echo yes "$verb" horizontalpodautoscalers.autoscaling "$p"; done
		# Argo Rollouts and KEDA (their CRDs need not be installed for RBAC).
		cat <<-EOF
			yes get rollouts.argoproj.io $p
			yes patch rollouts.argoproj.io $p
			yes watch rollouts.argoproj.io $p
			yes list rollouts.argoproj.io $p
			yes patch rollouts.argoproj.io $p status
			yes get rollouts.argoproj.io $p scale
			yes update rollouts.argoproj.io $p scale
			yes list scaledobjects.keda.sh $p
			yes patch scaledobjects.keda.sh $p
			no update rollouts.argoproj.io $p
			no delete rollouts.argoproj.io $p
			no update rollouts.argoproj.io $p status
			no patch rollouts.argoproj.io $p scale
			no get scaledobjects.keda.sh $p
			no watch scaledobjects.keda.sh $p
			no update scaledobjects.keda.sh $p
			no delete scaledobjects.keda.sh $p
			no patch scaledjobs.keda.sh $p
		EOF
		# Not a verb more.
		for verb in create update delete deletecollection; do echo no "$verb" deployments "$p"; done
		echo no update deployments "$p" status
		echo no update daemonsets "$p"
		for verb in patch delete; do echo no "$verb" replicasets "$p"; done
		echo no get controllerrevisions "$p"
		for verb in create update patch delete deletecollection; do echo no "$verb" pods "$p"; done
		echo "${JOB_RULES:-no}" get pods "$p" log # yes with job entries without a namespace
		echo no create pods "$p" exec
		echo no update pods "$p" status
		for verb in get list update patch delete; do echo no "$verb" events "$p"; done
		echo no create events.events.k8s.io "$p"
		for verb in get watch create update delete; do echo no "$verb" poddisruptionbudgets.policy "$p"; done
		for verb in watch create patch delete; do echo no "$verb" horizontalpodautoscalers.autoscaling "$p"; done
		echo no update horizontalpodautoscalers.autoscaling "$p" status
		# The Leases (and the Events on them): in the provider's namespace only.
		for verb in get list watch create update patch delete; do echo yes "$verb" leases "$NS"; done
		echo yes create events "$NS"
		echo no deletecollection leases "$NS"
		for verb in get list patch; do echo no "$verb" events "$NS"; done
		for verb in get watch create update patch; do echo no "$verb" leases "$p"; done
		echo no create leases kube-system
		echo no update leases kube-node-lease
		echo no list leases --all
		# Nothing else.
		echo no get secrets "$p"
		echo no get secrets "$NS"
		echo no list secrets --all
		echo no get configmaps "$NS"
		echo no '*' '*' "$p"
		echo no '*' '*' kube-system
		echo no get secrets kube-system
		echo no list namespaces --all
		echo no get nodes --all
		echo no create clusterrolebindings --all
		echo no escalate roles "$p"
		echo no bind roles "$NS"
		echo no update roles "$NS"
		echo no impersonate serviceaccounts "$NS"
		echo no create serviceaccounts "$NS" token
	} | can_all "$u"
}

can_matrix_namespaced() {
	local u=$1 r
	can_matrix_common "$u"
	for r in deployments statefulsets daemonsets; do
		can "$u" no get "$r" other-ns
		can "$u" no patch "$r" other-ns
	done
	can "$u" no get deployments other-ns scale
	can "$u" no update deployments other-ns scale
	can "$u" no list pods other-ns
	can "$u" no create pods other-ns eviction
	can "$u" no create events other-ns
	can "$u" no update horizontalpodautoscalers.autoscaling other-ns
	for r in deployments statefulsets; do
		can "$u" no get "$r" kube-system
		can "$u" no patch "$r" kube-system
		can "$u" no update "$r" kube-system scale
	done
	can "$u" no create pods kube-system eviction
	can "$u" no get deployments "$NS"
	can "$u" no patch deployments "$NS"
	can "$u" no watch deployments "$NS"
	# The new rules, nowhere else either.
	can_all "$u" <<-EOF
		no watch deployments other-ns
		no watch deployments --all
		no get replicasets other-ns
		no get rollouts.argoproj.io other-ns
		no patch rollouts.argoproj.io other-ns status
		no update rollouts.argoproj.io other-ns scale
		no list scaledobjects.keda.sh other-ns
		no patch scaledobjects.keda.sh other-ns
		no list scaledobjects.keda.sh --all
		no watch leases other-ns
		no patch leases kube-system
		no create events kube-system
		no get applications.argoproj.io other-ns
	EOF
	can_no_gitops "$u"
}

# can_no_gitops USER: no rule on Flux's or Argo CD's owners (namespaced
# scope without rbac.gitops.fluxNamespaces or gitops.argocdNamespaces).
can_no_gitops() {
	can_all "$1" <<-EOF
		no get kustomizations.kustomize.toolkit.fluxcd.io flux-system
		no get helmreleases.helm.toolkit.fluxcd.io flux-system
		no list kustomizations.kustomize.toolkit.fluxcd.io --all
		no get applications.argoproj.io argocd
		no list applications.argoproj.io argocd
		no update kustomizations.kustomize.toolkit.fluxcd.io sockshop-production
	EOF
}

can_matrix_cluster() {
	local u=$1
	can_matrix_common "$u"
	# Cluster scope is what it says: the same rules, in every namespace
	# (ALLOWED_NAMESPACES protects kube-system and the provider's own).
	can "$u" yes get deployments other-ns
	can "$u" yes patch deployments other-ns
	can "$u" yes update deployments other-ns scale
	can "$u" yes create pods other-ns eviction
	can "$u" yes get deployments kube-system
	can "$u" yes create events "$NS"
	# A ClusterRole's verbs are cluster-wide: deployments, pods, replicasets...
	# of every namespace can be listed and watched (the rollout's
	# verification watches them). rbac.scope=namespaced avoids it.
	can "$u" yes list deployments --all
	can "$u" yes list pods --all
	can "$u" yes watch pods --all
	can "$u" no update deployments kube-system
	can "$u" no delete deployments kube-system
	can "$u" no delete pods kube-system
	can "$u" no create leases other-ns
	can "$u" yes watch deployments other-ns
	can "$u" yes watch deployments --all # as list pods: a ClusterRole's verbs are cluster-wide
	can "$u" yes patch rollouts.argoproj.io other-ns status
	can "$u" yes patch scaledobjects.keda.sh other-ns
	# The GitOps owners: get,list everywhere; update only with a suspend
	# policy in the catalog (GITOPS_UPDATE=yes).
	local up=${GITOPS_UPDATE:-no}
	can_all "$u" <<-EOF
		yes get kustomizations.kustomize.toolkit.fluxcd.io flux-system
		yes list kustomizations.kustomize.toolkit.fluxcd.io --all
		yes get helmreleases.helm.toolkit.fluxcd.io other-ns
		yes list helmreleases.helm.toolkit.fluxcd.io --all
		yes get applications.argoproj.io argocd
		yes list applications.argoproj.io argocd
		$up update kustomizations.kustomize.toolkit.fluxcd.io flux-system
		$up update helmreleases.helm.toolkit.fluxcd.io other-ns
		$up update applications.argoproj.io argocd
		no patch kustomizations.kustomize.toolkit.fluxcd.io flux-system
		no delete applications.argoproj.io argocd
		no create applications.argoproj.io argocd
		no watch kustomizations.kustomize.toolkit.fluxcd.io --all
		no get gitrepositories.source.toolkit.fluxcd.io flux-system
		no get secrets flux-system
	EOF
}

# can_no_jobs USER: the built-in catalog has no job entry, so no permission
# on Jobs, pod logs or the job entries' Secrets, anywhere.
can_no_jobs() {
	local u=$1 ns verb
	{
		for ns in sockshop-production remediation-jobs; do
			for verb in create get watch delete; do echo "no $verb jobs.batch $ns"; done
			echo "no get pods $ns log"
			echo "no get secrets/cache-admin $ns"
		done
		echo "no create jobs.batch batch-ops"
		echo "no create jobs.batch other-ns"
	} | can_all "$u"
}

# can_matrix_jobs_namespaced USER: test/deploy/values-jobs.yaml with
# rbac.namespaces={sockshop-production}: the entries without a namespace run
# in sockshop-production, load-test in remediation-jobs, notify in batch-ops.
can_matrix_jobs_namespaced() {
	local u=$1
	say "job entries: RBAC as $u (kubectl auth can-i --as)"
	{
		local ns verb
		for ns in sockshop-production remediation-jobs; do
			for verb in create get watch delete; do echo "yes $verb jobs.batch $ns"; done
			echo "yes get pods $ns log"
		done
		printf 'yes %s jobs.batch batch-ops\n' create delete
		echo "yes get pods batch-ops log"
		for verb in list update patch deletecollection; do echo "no $verb jobs.batch sockshop-production"; done
		echo "no update jobs.batch remediation-jobs status"
		# Only the referenced Secrets, by name, in the namespace of their entry.
		cat <<-EOF
			yes get secrets/cache-admin sockshop-production
			yes get secrets/locust-secret sockshop-production
			no get secrets/jobs-token sockshop-production
			no get secrets/db-password sockshop-production
			yes get secrets/jobs-token remediation-jobs
			no get secrets/cache-admin remediation-jobs
			no get secrets/jobs-token batch-ops
			no list secrets sockshop-production
			no list secrets remediation-jobs
			no watch secrets remediation-jobs
		EOF
		# A job namespace of its own: what a job needs, nothing else.
		cat <<-EOF
			yes list pods remediation-jobs
			yes create events batch-ops
			no get pods remediation-jobs
			no create pods batch-ops
			no patch deployments remediation-jobs
			no create pods batch-ops eviction
		EOF
		# Not where no job runs.
		for verb in create get watch delete; do echo "no $verb jobs.batch other-ns"; done
		echo "no get pods other-ns log"
		echo "no get secrets/cache-admin other-ns"
		echo "no create jobs.batch kube-system"
	} | can_all "$u"
}

# can_matrix_jobs_cluster USER: the same entries with rbac.scope=cluster: the
# entries without a namespace may run anywhere (the ClusterRole), the named
# Secrets anywhere too; jobs-token only in remediation-jobs.
can_matrix_jobs_cluster() {
	local u=$1
	say "job entries, cluster scope: RBAC as $u"
	can_all "$u" <<-EOF
		yes create jobs.batch other-ns
		yes get jobs.batch other-ns
		yes watch jobs.batch other-ns
		yes delete jobs.batch other-ns
		yes get pods other-ns log
		yes create jobs.batch remediation-jobs
		yes get secrets/cache-admin other-ns
		yes get secrets/jobs-token remediation-jobs
		no get secrets/jobs-token other-ns
		no get secrets/db-password remediation-jobs
		no list secrets --all
		no list jobs.batch --all
		no update jobs.batch other-ns
	EOF
}

# plain_binding_checks: deploy/service.yaml (and -nats) bind their ClusterRole
# with a RoleBinding in sockshop-production, and nowhere cluster-wide.
plain_binding_checks() {
	local got
	got=$(kc get rolebinding keptn-action-provider -n sockshop-production \
		-o jsonpath='{.roleRef.kind}/{.roleRef.name} {range .subjects[*]}{.kind}:{.namespace}:{.name}{end}') ||
		fail "deploy/service.yaml: no RoleBinding keptn-action-provider in sockshop-production"
	[[ $got == "ClusterRole/keptn-action-provider ServiceAccount:$NS:action-provider" ]] ||
		fail "deploy/service.yaml: RoleBinding keptn-action-provider in sockshop-production is $got"
	[[ -z $(kc get clusterrolebindings -l app.kubernetes.io/name=action-provider -o name) ]] ||
		fail "deploy/service.yaml binds its ClusterRole cluster-wide"
	ok "deploy/service.yaml: ClusterRole keptn-action-provider bound by a RoleBinding in sockshop-production only; no ClusterRoleBinding"
}

# pod_env_checks DEPLOYMENT [ALLOWED_NAMESPACES]: the provider container of
# the applied DEPLOYMENT (in $NS) gets POD_NAMESPACE and POD_NAME from the
# downward API, and the ALLOWED_NAMESPACES given (default *).
pod_env_checks() {
	local d=$1 want=${2:-*} jp='{.spec.template.spec.containers[?(@.name=="action-provider")].env[?(@.name=="%s")]%s}' got
	# shellcheck disable=SC2059
	got=$(kc get "$d" -n "$NS" -o jsonpath="$(printf "$jp" POD_NAMESPACE .valueFrom.fieldRef.fieldPath)/$(printf "$jp" POD_NAME .valueFrom.fieldRef.fieldPath)")
	[[ $got == metadata.namespace/metadata.name ]] || fail "$d: POD_NAMESPACE/POD_NAME from $got, want metadata.namespace/metadata.name"
	# shellcheck disable=SC2059
	got=$(kc get "$d" -n "$NS" -o jsonpath="$(printf "$jp" ALLOWED_NAMESPACES .value)")
	[[ $got == "$want" ]] || fail "$d: ALLOWED_NAMESPACES=$got, want $want"
	ok "$d: POD_NAMESPACE, POD_NAME from the downward API; ALLOWED_NAMESPACES=$want"
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll COMMAND until it succeeds.
wait_for() {
	local desc=$1 secs=$2 deadline
	shift 2
	deadline=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		(($(date +%s) < deadline)) || fail "$desc: not within ${secs}s"
		sleep 0.3
	done
}

replicas_of() { kc get deployment "$2" -n "$1" -o jsonpath='{.spec.replicas}'; }

no_release_objects() {
	local left
	left=$(kc get all,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,poddisruptionbudgets,networkpolicies,servicemonitors,configmaps,secrets \
		-A -l "app.kubernetes.io/instance=$1" -o name 2>&1) || return 1
	[[ -z $left ]]
}

# Kill a process this script started, by its pid file, and wait for it.
stop_pid() {
	local f=$1 pid i
	[[ -s $f ]] || return 0
	pid=$(<"$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

live_cleanup() {
	stop_pid "$TMP/pids/provider"
	stop_pid "$TMP/pids/sink"
	stop_pid "$TMP/pids/natssink"
	stop_pid "$TMP/pids/nats"
	stop_pid "$TMP/pids/kubelet"
	"$CONTROLPLANE" stop "$TMP/cp" >/dev/null 2>&1 || true
}

on_fail() {
	local f
	for f in "$TMP/logs/provider.log" "$TMP/logs/kubelet.log" "$TMP/logs/provider-nats.log" "$TMP/logs/nats-server.log" "$TMP/logs/natssink.log"; do
		[[ -s $f ]] || continue
		echo "---- last 30 lines of $f"
		tail -n 30 "$f"
	done
	for f in "$TMP/sink-events.jsonl" "$TMP/nats-events.jsonl"; do
		[[ -s $f ]] || continue
		echo "---- events received ($f)"
		tail -n 10 "$f"
	done
}

# post EVENT_FILE: POST a triggered event to the provider, as the distributor.
# POSTED counts them: each is claimed with a Lease in $NS.
POSTED=0
post() {
	local out
	out=$("$TMP/bin/keptnsim" post "http://127.0.0.1:$RCV_PORT/" "$1" 2>&1) || fail "POST $1 to the provider: $out"
	[[ $out == 202* ]] || fail "POST $1: $out; want 202"
	POSTED=$((POSTED + 1))
}

# expect_finished ID STATUS RESULT MESSAGE [TIMEOUT]: MESSAGE is a part of
# the finished message (a change that rolls out ends "; rollout converged
# in ...", so match the part before it).
expect_finished() {
	local out
	out=$("$TMP/bin/keptnsim" expect -events "${EVENTS_FILE:-$TMP/sink-events.jsonl}" -id "$1" -status "$2" -result "$3" \
		-message "$4" -timeout "${5:-30s}" 2>&1) || fail "$out"
	ok "finished $out"
}

# trigger ACTION VALUE [PROJECT STAGE SERVICE]: post one action.triggered
# event (default: sockshop-production, service carts); sets ID.
N_EVENT=0
trigger() {
	N_EVENT=$((N_EVENT + 1))
	local f="$TMP/event-$N_EVENT.json"
	ID=$("$TMP/bin/keptnsim" event -project "${3:-sockshop}" -stage "${4:-production}" -service "${5:-carts}" \
		-action "$1" -value "$2" -out "$f") || fail "keptnsim event $1 $2"
	post "$f"
}

# audit_events NAMESPACE WORKLOAD REASON: how many audit Events the provider
# wrote on WORKLOAD with REASON.
audit_events() {
	kc get events -n "$1" -o name \
		--field-selector "involvedObject.name=$2,reason=$3,source=keptn-action-provider" | wc -l
}

# approval_event NAMESPACE NAME REASON ID: the message of the approval Event
# REASON (internal/gate/approval) on NAME for the run ID; fails if none.
approval_event() {
	kc get events -n "$1" --field-selector "involvedObject.name=$2,reason=$3,source=keptn-action-provider" \
		-o jsonpath='{range .items[*]}{.type} {.message}{"\n"}{end}' | grep -F "triggeredid $4"
}
# pending_is NAMESPACE KIND NAME ID: the target is marked pending approval of ID.
pending_is() {
	[[ $(kc get "$2" "$3" -n "$1" -o jsonpath='{.metadata.annotations.keptn-action-provider\.io/approval-pending}') == "$4" ]]
}
# approve NAMESPACE KIND NAME: play the person the approval gate waits for.
# Once the target is marked pending for the run $ID and the Warning Event
# ApprovalPending on it says how to approve, run that command as the
# cluster's admin (whoever may annotate the target may approve); the
# command must be exactly the one expected, since it comes from the cluster.
approve() {
	local ns=$1 kind=$2 name=$3 want msg cmd t0
	t0=$(now_ms)
	want="kubectl annotate $kind/$name -n $ns keptn-action-provider.io/approve=$ID --overwrite"
	wait_for "$kind $ns/$name marked approval-pending for $ID" 30 pending_is "$ns" "$kind" "$name" "$ID"
	wait_for "the ApprovalPending Event of $ID" 10 approval_event "$ns" "$name" ApprovalPending "$ID"
	msg=$(approval_event "$ns" "$name" ApprovalPending "$ID")
	[[ $msg == Warning\ * ]] || fail "the ApprovalPending Event of $ID is not a Warning: $msg"
	cmd=$(grep -oE 'approve: kubectl annotate [^;]*' <<<"$msg" | head -n1 | sed 's/^approve: //')
	[[ $cmd == "$want" ]] || fail "the ApprovalPending Event of $ID says to approve with '$cmd'; want '$want' ($msg)"
	local -a argv
	read -ra argv <<<"$cmd"
	kc "${argv[@]:1}" >/dev/null || fail "$cmd"
	ok "  approval: $kind $ns/$name marked approval-pending=$ID, Warning Event ApprovalPending; ran its command as the admin after $(($(now_ms) - t0)) ms: $cmd"
}
# approved NAMESPACE KIND NAME: after the run $ID finished, the Event
# ApprovalGranted names it, and the approval's annotations are gone.
approved() {
	local ns=$1 kind=$2 name=$3 left
	approval_event "$ns" "$name" ApprovalGranted "$ID" | grep -q '^Normal ' || fail "no Normal Event ApprovalGranted on $ns/$name for $ID"
	approval_event "$ns" "$name" ApprovalPending "$ID" >/dev/null || fail "no Event ApprovalPending on $ns/$name for $ID"
	left=$(kc get "$kind" "$name" -n "$ns" -o jsonpath='{.metadata.annotations}' | grep -oE 'keptn-action-provider\.io/(approval-pending|approval-request|approve|reject)' || true)
	[[ -z $left ]] || fail "the approval left annotations on $kind $ns/$name: $left"
	ok "  approval: Events ApprovalPending (Warning) and ApprovalGranted (Normal) on $kind $ns/$name; its approval annotations removed"
}

# expect_leases: one claimed-event Lease per posted event, all of the
# provider's Leases in $NS and none anywhere else.
expect_leases() {
	local where n
	where=$(kc get leases -A -l keptn-action-provider.io/record -o jsonpath='{range .items[*]}{.metadata.namespace}{"\n"}{end}' | sort -u)
	[[ $where == "$NS" ]] || fail "the provider's Leases are in '${where//$'\n'/ }', want only $NS"
	n=$(kc get leases -n "$NS" -l keptn-action-provider.io/record=event -o name | wc -l)
	((n == POSTED)) || fail "$n claimed-event Leases in $NS, want $POSTED (one per triggered event)"
	ok "Leases only in $NS: $n claimed events (one per triggered event), $(kc get leases -n "$NS" -l keptn-action-provider.io/record=target -o name | wc -l) targets"
}

# The kubelet's part for the helm test Pod, which kwok leaves Running forever
# (it completes only Job pods): check what the Pod would check, then set its
# phase. The Pod GETs /readyz through the ops Service; here the Service must
# have a ready endpoint (a pod of the Deployment), and the path is asked of
# the real provider process, which stands for that pod.
play_kubelet_for_test_pod() {
	local pod=$1 deadline url phase exit_code=1 t
	deadline=$(($(date +%s) + 60))
	until [[ $(kc get pod "$pod" -n "$NS" -o jsonpath='{.status.phase}' 2>/dev/null) == Running ]]; do
		(($(date +%s) < deadline)) || { echo "test pod $pod never ran"; return 1; }
		sleep 0.3
	done
	url=$(kc get pod "$pod" -n "$NS" -o jsonpath='{.spec.containers[0].env[?(@.name=="READYZ_URL")].value}')
	echo "test pod $pod runs; READYZ_URL=$url"
	local svc="${url#http://}"
	svc=${svc%%.*}
	# The Service's ready endpoints must be pods of the Deployment (not this Pod).
	local endpoints
	endpoints=$(kc get endpointslices -n "$NS" -l "kubernetes.io/service-name=$svc" \
		-o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.targetRef.name}{"\n"}{end}')
	echo "service $svc: ready endpoints: ${endpoints//$'\n'/ }"
	if [[ $url == "http://$svc.$NS.svc:8090/readyz" && -n $endpoints ]] && ! grep -qx "$pod" <<<"$endpoints" &&
		! grep -qv "^$RELEASE-" <<<"$endpoints" && "$TMP/bin/keptnsim" get "http://127.0.0.1:$OPS_PORT/readyz"; then
		exit_code=0
	fi
	t=$(date -u +%Y-%m-%dT%H:%M:%SZ)
	phase=Failed
	((exit_code != 0)) || phase=Succeeded
	echo "setting $pod to $phase (exit code $exit_code)"
	kc patch pod "$pod" -n "$NS" --subresource=status --type=merge -p "$(printf \
		'{"status":{"phase":"%s","containerStatuses":[{"name":"readyz","image":"busybox","imageID":"","ready":false,"restartCount":0,"started":false,"state":{"terminated":{"exitCode":%d,"reason":"%s","startedAt":"%s","finishedAt":"%s"}}}]}}' \
		"$phase" "$exit_code" "$([[ $phase == Succeeded ]] && echo Completed || echo Error)" "$t" "$t")"
}

live_checks() {
	trap live_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	mkdir -p "$TMP/pids" "$TMP/logs"
	if [[ ${DEPLOY_IN_NETNS:-0} == 1 ]]; then ip link set lo up || fail "cannot bring up lo in the network namespace"; fi

	step "control plane (test/controlplane, kwok)"
	local attempt started=0
	for attempt in 1 2 3; do
		if "$CONTROLPLANE" start "$TMP/cp" >/dev/null 2>"$TMP/logs/controlplane.log"; then
			started=1
			break
		fi
		echo "   control plane start failed (attempt $attempt of 3)"
	done
	((started)) || fail "control plane: $(tail -n 20 "$TMP/logs/controlplane.log")"
	set -a
	# shellcheck disable=SC1091
	. "$TMP/cp/env"
	set +a
	export PATH="$KUBE_BIN_DIR:$PATH"
	kc create namespace "$NS" >/dev/null
	# Pod Security "restricted", enforced (pods are rejected) and warned
	# (workloads whose pods would be rejected are reported).
	kc label namespace "$NS" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/warn=restricted >/dev/null
	kc create namespace sockshop-production >/dev/null
	kc create namespace sockshop-staging >/dev/null
	kc create namespace other-ns >/dev/null
	kc create namespace remediation-jobs >/dev/null # test/deploy/values-jobs.yaml's job namespaces
	kc create namespace batch-ops >/dev/null
	kc create namespace flux-system >/dev/null # test/deploy/values-gitops.yaml's GitOps namespaces
	kc create namespace argocd >/dev/null
	kc apply -f test/deploy/servicemonitor-crd.yaml >/dev/null
	kc wait --for condition=established --timeout=30s crd/servicemonitors.monitoring.coreos.com >/dev/null
	ok "API server $KUBE_APISERVER_URL ($(kc get --raw /version | grep -o '"gitVersion": *"[^"]*"' | cut -d'"' -f4)); namespaces keptn (Pod Security restricted: enforce, warn), sockshop-production, sockshop-staging, other-ns, remediation-jobs, batch-ops; flux-system, argocd; ServiceMonitor CRD"

	step "server-side dry runs"
	kc apply --dry-run=server -f deploy/service.yaml >"$TMP/dry.log" 2>&1 || fail "deploy/service.yaml: $(cat "$TMP/dry.log")"
	! grep -q '^Warning' "$TMP/dry.log" || fail "deploy/service.yaml: $(grep '^Warning' "$TMP/dry.log")"
	ok "kubectl apply --dry-run=server -f deploy/service.yaml ($(wc -l <"$TMP/dry.log") objects, no warning)"
	kc apply --dry-run=server -f deploy/service-nats.yaml >"$TMP/dry.log" 2>&1 || fail "deploy/service-nats.yaml: $(cat "$TMP/dry.log")"
	! grep -q '^Warning' "$TMP/dry.log" || fail "deploy/service-nats.yaml: $(grep '^Warning' "$TMP/dry.log")"
	ok "kubectl apply --dry-run=server -f deploy/service-nats.yaml ($(wc -l <"$TMP/dry.log") objects, no warning)"
	local tpl=("$HELM" template "$RELEASE" chart/ -n "$NS")
	local name args
	for name in cluster namespaced everything nats nats-everything; do
		case $name in
		cluster) args=(--set rbac.scope=cluster --set 'allowedNamespaces={*}') ;;
		namespaced) args=(--set rbac.scope=namespaced --set 'rbac.namespaces={sockshop-production,other-ns}') ;;
		everything) args=(-f test/deploy/values-everything.yaml) ;;
		nats) args=(--set transport=nats --set 'rbac.namespaces={sockshop-production}') ;;
		nats-everything) args=(-f test/deploy/values-nats.yaml) ;;
		esac
		"${tpl[@]}" "${args[@]}" >"$TMP/render-$name.yaml" || fail "helm template ($name)"
		kc apply --dry-run=server -f "$TMP/render-$name.yaml" >"$TMP/dry.log" 2>&1 || fail "chart ($name): $(cat "$TMP/dry.log")"
		! grep -q '^Warning' "$TMP/dry.log" || fail "chart ($name): $(grep '^Warning' "$TMP/dry.log")"
		ok "helm template ($name) | kubectl apply --dry-run=server: $(wc -l <"$TMP/dry.log") objects accepted, no warning"
	done

	step "deploy/service.yaml applied for real"
	kc apply -f deploy/service.yaml >/dev/null
	kc rollout status deployment/action-provider -n "$NS" --timeout=60s >/dev/null || fail "deploy/service.yaml: rollout"
	ok "Deployment action-provider rolled out (kwok: Running/Ready)"
	expect_rules clusterrole keptn-action-provider
	plain_binding_checks
	expect_lease_rules "$PLAIN_LEASES" "$NS" action-provider
	pod_env_checks deployment/action-provider sockshop-production
	can_matrix_namespaced "$PLAIN_SA_USER"
	local jp='{.spec.template.spec.containers[*].name}|{.spec.template.spec.containers[0].env[?(@.name=="TRANSPORT")].value}|{.spec.template.spec.terminationGracePeriodSeconds}'
	[[ $(kc get deployment action-provider -n "$NS" -o jsonpath="$jp") == "action-provider distributor||90" ]] ||
		fail "deploy/service.yaml: the Deployment is $(kc get deployment action-provider -n "$NS" -o jsonpath="$jp")"
	kc apply -f deploy/service-nats.yaml >"$TMP/apply-nats.log" 2>&1 || fail "deploy/service-nats.yaml over service.yaml: $(cat "$TMP/apply-nats.log")"
	! grep -q '^Warning' "$TMP/apply-nats.log" || fail "deploy/service-nats.yaml: $(grep '^Warning' "$TMP/apply-nats.log")"
	[[ $(grep -c ' created$' "$TMP/apply-nats.log") == 0 ]] || fail "deploy/service-nats.yaml created objects service.yaml did not have: $(grep ' created$' "$TMP/apply-nats.log")"
	kc rollout status deployment/action-provider -n "$NS" --timeout=60s >/dev/null || fail "deploy/service-nats.yaml: rollout"
	[[ $(kc get deployment action-provider -n "$NS" -o jsonpath="$jp") == "action-provider|nats|90" ]] ||
		fail "deploy/service-nats.yaml over service.yaml: the Deployment is $(kc get deployment action-provider -n "$NS" -o jsonpath="$jp")"
	ok "kubectl apply -f deploy/service-nats.yaml over service.yaml: the same $(wc -l <"$TMP/apply-nats.log") objects, the distributor container gone, TRANSPORT=nats, grace period 90; rolled out"
	expect_rules clusterrole keptn-action-provider
	plain_binding_checks
	expect_lease_rules "$PLAIN_LEASES" "$NS" action-provider
	pod_env_checks deployment/action-provider sockshop-production
	kc delete -f deploy/service-nats.yaml --wait --timeout=60s >/dev/null
	[[ $(kc get namespace "$NS" -o jsonpath='{.status.phase}') == Active ]] ||
		fail "kubectl delete -f deploy/service-nats.yaml took namespace $NS with it"
	[[ -z $(kc get serviceaccounts,roles,rolebindings,services,deployments -n "$NS" -l app.kubernetes.io/name=action-provider -o name) &&
		-z $(kc get rolebindings -n sockshop-production -l app.kubernetes.io/name=action-provider -o name) &&
		-z $(kc get clusterroles,clusterrolebindings -l app.kubernetes.io/name=action-provider -o name) ]] ||
		fail "kubectl delete -f deploy/service-nats.yaml left objects behind"
	ok "kubectl delete -f deploy/service-nats.yaml removed it all (service.yaml's objects too) and left namespace $NS alone"

	step "a wrong value fails helm install"
	must_fail "helm install --set rbac.scope=everything" "at '/rbac/scope': value must be one of 'cluster', 'namespaced'" \
		"$HELM" install bad chart/ -n "$NS" --set rbac.scope=everything
	! "$HELM" status bad -n "$NS" >/dev/null 2>&1 || fail "the failed install left a release"
	no_release_objects bad || fail "the failed install left objects"
	ok "no release and no object left behind"

	step "helm install --wait (rbac.scope=namespaced: sockshop-production)"
	"$HELM" install "$RELEASE" chart/ -n "$NS" --wait --timeout 120s \
		--set rbac.scope=namespaced --set 'rbac.namespaces={sockshop-production}' >"$TMP/logs/install.log" 2>&1 ||
		fail "helm install: $(cat "$TMP/logs/install.log")"
	grep -q 'STATUS: deployed' "$TMP/logs/install.log" || fail "helm install: not deployed"
	ok "deployed; $(kc get deployment "$RELEASE" -n "$NS" -o jsonpath='{.status.readyReplicas}') ready replica"
	grep -qF "helm test $RELEASE" "$TMP/logs/install.log" || fail "NOTES.txt does not say how to check it"
	ok "NOTES.txt tells how to check it works"
	expect_rules role "$CLUSTER_NAME" sockshop-production
	expect_lease_rules "$LEASES_NAME" "$NS" "$SA"
	[[ -z $(kc get clusterroles,clusterrolebindings -l "app.kubernetes.io/instance=$RELEASE" -o name) ]] ||
		fail "namespaced scope created cluster-wide RBAC"
	ok "no ClusterRole or ClusterRoleBinding in namespaced scope"
	pod_env_checks "deployment/$RELEASE" sockshop-production
	can_matrix_namespaced "$SA_USER"
	can_no_jobs "$SA_USER"

	step "the provider binary with the chart's ServiceAccount token"
	local token
	token=$(kc create token "$SA" -n "$NS" --duration=30m)
	cat >"$TMP/sa.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: controlplane
    cluster:
      server: $KUBE_APISERVER_URL
      certificate-authority: $KUBE_CA_FILE
users:
  - name: $SA
    user:
      token: $token
contexts:
  - name: $SA
    context: {cluster: controlplane, user: $SA, namespace: $NS}
current-context: $SA
EOF
	chmod 600 "$TMP/sa.kubeconfig"
	local who
	who=$(KUBECONFIG="$TMP/sa.kubeconfig" kc auth whoami -o jsonpath='{.status.userInfo.username}')
	[[ $who == "$SA_USER" ]] || fail "the token is $who, want $SA_USER"
	ok "kubeconfig with a token of $who"
	kc create deployment carts --image=registry.invalid/carts:1 --replicas=1 -n sockshop-production >/dev/null
	kc create deployment carts --image=registry.invalid/carts:1 --replicas=1 -n other-ns >/dev/null
	kc rollout status deployment/carts -n sockshop-production --timeout=60s >/dev/null
	kc rollout status deployment/carts -n other-ns --timeout=60s >/dev/null
	ok "Deployment carts at 1 replica in sockshop-production and other-ns"

	"$TMP/bin/keptnsim" sink -addr 127.0.0.1:0 -port-file "$TMP/sink.port" -out "$TMP/sink-events.jsonl" \
		>"$TMP/logs/sink.log" 2>&1 &
	echo $! >"$TMP/pids/sink"
	wait_for "event sink" 10 test -s "$TMP/sink.port"
	local ports
	ports=$("$TMP/bin/keptnsim" freeport 2)
	RCV_PORT=$(sed -n 1p <<<"$ports")
	OPS_PORT=$(sed -n 2p <<<"$ports")
	# As the chart's pod, except: ALLOWED_NAMESPACES=* (the chart renders
	# rbac.namespaces), so that an event for other-ns reaches the API server
	# and RBAC is what stops it; ACTION_COOLDOWN=0s, because
	# remediation.yaml's actions scale carts several times within a minute.
	env -i PATH="$PATH" HOME="$TMP" KUBECONFIG="$TMP/sa.kubeconfig" SANDBOX=false \
		RCV_HOST=127.0.0.1 RCV_PORT="$RCV_PORT" OPS_PORT="$OPS_PORT" \
		EVENTBROKER="http://127.0.0.1:$(<"$TMP/sink.port")/event" LOG_FORMAT=text LOG_LEVEL=debug \
		POD_NAMESPACE="$NS" POD_NAME=action-provider-deploy-sh ALLOWED_NAMESPACES='*' ACTION_COOLDOWN=0s \
		"$TMP/bin/action-provider" >"$TMP/logs/provider.log" 2>&1 &
	echo $! >"$TMP/pids/provider"
	wait_for "provider /readyz" 20 "$TMP/bin/keptnsim" get "http://127.0.0.1:$OPS_PORT/readyz"
	grep -q 'using Kubernetes cluster' "$TMP/logs/provider.log" || fail "the provider is not using the cluster"
	ok "provider ready on 127.0.0.1:$RCV_PORT (ops $OPS_PORT), events to the sink on $(<"$TMP/sink.port")"

	say "remediation.yaml's actions, as Keptn would trigger them (events: $TMP/events)"
	# What each of examples/keptn/remediation.yaml's actions must do to
	# sockshop-production/carts, in order (index.tsv: file, id, problem type,
	# action index, action, value).
	local -A want_to=(["Response time degradation/0"]=2 ["Failure rate increase/0"]=3
		["CPU saturation/0"]=4 ["CPU saturation/1"]=5 ["default/0"]="5 dry")
	local file id ptype idx action value from to
	while IFS=$'\t' read -r file id ptype idx action value; do
		[[ -n ${want_to["$ptype/$idx"]:-} ]] || fail "no expectation for $ptype action $idx; update test/deploy.sh with examples/keptn/remediation.yaml"
		from=$(replicas_of sockshop-production carts)
		to=${want_to["$ptype/$idx"]}
		post "$TMP/events/$file"
		if [[ $to == *dry ]]; then
			expect_finished "$id" succeeded pass "dry run: would scale deployment sockshop-production/carts from $from to 3 replicas"
			to=${to% dry}
		else
			expect_finished "$id" succeeded pass "scaled deployment sockshop-production/carts from $from to $to replicas"
		fi
		[[ $(replicas_of sockshop-production carts) == "$to" ]] ||
			fail "$ptype action $idx ($action $value): carts has $(replicas_of sockshop-production carts) replicas on the server, want $to"
		ok "  \"$ptype\" #$idx: $action $value -> carts at $to replicas on the API server"
	done <"$TMP/events/index.tsv"
	kc rollout status deployment/carts -n sockshop-production --timeout=60s >/dev/null
	ok "carts rolled out at $(kc get deployment carts -n sockshop-production -o jsonpath='{.status.readyReplicas}') ready replicas"
	local n
	n=$(audit_events sockshop-production carts Scaled)
	((n == 4)) || fail "$n audit Events (reason Scaled) on sockshop-production/carts, want 4 (the dry run writes none)"
	ok "4 audit Events (reason Scaled, source keptn-action-provider) on carts: one per real change"
	local targets
	targets=$(kc get leases -n "$NS" -l keptn-action-provider.io/record=target \
		-o jsonpath='{range .items[*]}{.metadata.annotations.keptn-action-provider\.io/target}{"|"}{.metadata.annotations.keptn-action-provider\.io/last-scale}{"\n"}{end}')
	grep -q '^deployment sockshop-production/carts|{.*"action":"scale"' <<<"$targets" ||
		fail "no target Lease in $NS records the last scale of sockshop-production/carts: $targets"
	ok "the target Lease of sockshop-production/carts in $NS records its last scale (the cooldown's memory)"
	expect_leases

	say "the guardrails refuse: status succeeded, result fail, nothing changed"
	trigger scale '{"replicas":51}'
	expect_finished "$ID" succeeded fail "refused (maximum replicas): scaling deployment sockshop-production/carts from 5 to 51 replicas is above the maximum of 50"
	trigger scale '{"replicas":"+11"}'
	expect_finished "$ID" succeeded fail "refused (maximum step): scaling deployment sockshop-production/carts from 5 to 16 replicas changes more than 10 at once"
	trigger scale '{"replicas":"+1","namespace":"kube-system","name":"coredns"}'
	expect_finished "$ID" succeeded fail "refused (target override): the value sets \"namespace\": \"kube-system\", but catalog entry \"scale\" does not let events choose the namespace"
	trigger restart "{\"namespace\":\"$NS\",\"name\":\"$RELEASE\"}"
	expect_finished "$ID" succeeded fail "refused (target override): the value sets \"namespace\": \"$NS\""
	trigger restart null kube system coredns
	expect_finished "$ID" succeeded fail "refused (namespace allowlist): namespace kube-system is protected"
	[[ $(replicas_of sockshop-production carts) == 5 ]] || fail "a refused action changed carts"
	ok "carts unchanged at 5 replicas"

	say "restart, rollback, delete-pods and an autoscaled scale with the chart's RBAC"
	trigger restart null
	expect_finished "$ID" succeeded pass "restarted deployment sockshop-production/carts (never restarted); rollout converged" 90s
	[[ -n $(kc get deployment carts -n sockshop-production -o jsonpath='{.spec.template.metadata.annotations.kubectl\.kubernetes\.io/restartedAt}') ]] ||
		fail "restart: the pod template of carts has no restartedAt"
	n=$(audit_events sockshop-production carts Restarted)
	((n == 1)) || fail "restart: $n audit Events (Restarted) on carts, want 1"
	ok "  restart: PATCHed kubectl.kubernetes.io/restartedAt into carts' pod template; 1 audit Event (Restarted)"
	# A rollback in stage production waits for a person's approval (the
	# approval gate's defaults, on without a catalog section).
	trigger rollback null
	approve sockshop-production deployment carts
	expect_finished "$ID" succeeded pass "rolled back deployment sockshop-production/carts from revision 2 to revision 1" 90s
	approved sockshop-production deployment carts
	[[ -z $(kc get deployment carts -n sockshop-production -o jsonpath='{.spec.template.metadata.annotations.kubectl\.kubernetes\.io/restartedAt}') ]] ||
		fail "rollback: the pod template of carts still has restartedAt"
	n=$(audit_events sockshop-production carts RolledBack)
	((n == 1)) || fail "rollback: $n audit Events (RolledBack) on carts, want 1"
	ok "  rollback: carts' pod template is revision 1's again (from its ReplicaSets); 1 audit Event (RolledBack)"
	kc rollout status deployment/carts -n sockshop-production --timeout=60s >/dev/null
	kc create poddisruptionbudget carts -n sockshop-production --selector=app=carts --max-unavailable=0 >/dev/null
	wait_for "the disruption controller to process PodDisruptionBudget carts" 30 \
		bash -c "[[ \$(kubectl get pdb carts -n sockshop-production -o jsonpath='{.status.observedGeneration}') == 1 ]]"
	# delete-pods with "all": true waits for approval too.
	trigger delete-pods '{"all":true,"maxPods":1}'
	approve sockshop-production deployment carts
	expect_finished "$ID" succeeded fail "refused (PodDisruptionBudget)"
	expect_finished "$ID" succeeded fail "PodDisruptionBudget carts (maxUnavailable 0"
	ok "  delete-pods: refused by PodDisruptionBudget carts, which the provider named (list poddisruptionbudgets)"
	kc delete poddisruptionbudget carts -n sockshop-production >/dev/null
	local pods_before evicted
	pods_before=$(kc get pods -n sockshop-production -l app=carts -o jsonpath='{.items[*].metadata.name}')
	trigger delete-pods '{"all":true,"maxPods":1}'
	approve sockshop-production deployment carts
	expect_finished "$ID" succeeded pass "evicted 1 pod of deployment sockshop-production/carts: carts-" 90s
	approved sockshop-production deployment carts
	evicted=$(grep -F "$ID" "$TMP/sink-events.jsonl" | grep -o 'evicted 1 pod of deployment sockshop-production/carts: carts-[a-z0-9-]*' | head -n1 | sed 's/.*: //')
	[[ -n $evicted && " $pods_before " == *" $evicted "* ]] || fail "delete-pods: which pod was evicted? ('$evicted'; pods before: $pods_before)"
	wait_for "pod $evicted gone" 30 bash -c "! kubectl get pod '$evicted' -n sockshop-production"
	kc rollout status deployment/carts -n sockshop-production --timeout=60s >/dev/null
	n=$(audit_events sockshop-production carts PodsEvicted)
	((n == 1)) || fail "delete-pods: $n audit Events (PodsEvicted) on carts, want 1"
	ok "  delete-pods: evicted $evicted (pods/eviction), it is gone and replaced; 1 audit Event (PodsEvicted)"
	kc create deployment orders --image=registry.invalid/orders:1 --replicas=1 -n sockshop-production >/dev/null
	kc apply -f - >/dev/null <<HPA
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: orders, namespace: sockshop-production}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: orders}
  minReplicas: 1
  maxReplicas: 3
  metrics:
    - type: Resource
      resource: {name: cpu, target: {type: Utilization, averageUtilization: 80}}
HPA
	kc rollout status deployment/orders -n sockshop-production --timeout=60s >/dev/null
	trigger scale '{"replicas":2}' sockshop production orders
	expect_finished "$ID" succeeded pass "deployment sockshop-production/orders is autoscaled by horizontalpodautoscaler orders, so its minReplicas was set instead of the replicas: 1 → 2" 90s
	[[ $(kc get hpa orders -n sockshop-production -o jsonpath='{.spec.minReplicas}/{.spec.maxReplicas}') == 2/3 ]] ||
		fail "scale with an HPA: orders' HPA is not at minReplicas 2, maxReplicas 3"
	[[ $(replicas_of sockshop-production orders) == 2 ]] || fail "scale with an HPA: the autoscaler did not bring orders to 2"
	ok "  scale of an autoscaled deployment: HPA orders minReplicas 1 → 2 (get, list, update horizontalpodautoscalers); the autoscaler took orders to 2"
	# The opt-out last: the Deployment controller copies the annotation to the
	# current ReplicaSet, and a rollback to that revision would bring it back
	# (kubectl rollout undo copies a revision's annotations too).
	kc annotate deployment orders -n sockshop-production keptn-action-provider.io/opt-out=true >/dev/null
	trigger restart null sockshop production orders
	expect_finished "$ID" succeeded fail "refused (opt-out annotation): deployment sockshop-production/orders is annotated"
	[[ -z $(kc get deployment orders -n sockshop-production -o jsonpath='{.spec.template.metadata.annotations}') ]] ||
		fail "a refused restart changed the pod template of orders"
	ok "  opt-out annotation: restart of orders refused, its pod template unchanged"
	expect_leases

	trigger scale '{"replicas":"+1"}' other ns carts
	expect_finished "$ID" errored fail "forbidden"
	[[ $(replicas_of other-ns carts) == 1 ]] || fail "other-ns/carts changed"
	ok "other-ns (outside rbac.namespaces): errored/fail \"forbidden\", carts unchanged at 1"
	trigger restart null other ns carts
	expect_finished "$ID" errored fail "forbidden"
	[[ -z $(kc get deployment carts -n other-ns -o jsonpath='{.spec.template.metadata.annotations}') ]] || fail "other-ns/carts was restarted"
	ok "other-ns: restart errored/fail \"forbidden\" too, carts not restarted"

	step "helm test"
	play_kubelet_for_test_pod "$RELEASE-test-readyz" >"$TMP/logs/kubelet.log" 2>&1 &
	echo $! >"$TMP/pids/kubelet"
	"$HELM" test "$RELEASE" -n "$NS" --timeout 90s >"$TMP/logs/test.log" 2>&1 || fail "helm test: $(cat "$TMP/logs/test.log")"
	wait "$(<"$TMP/pids/kubelet")" || fail "helm test pod: $(cat "$TMP/logs/kubelet.log")"
	rm -f "$TMP/pids/kubelet"
	grep -q 'Phase:.*Succeeded' "$TMP/logs/test.log" || fail "helm test: $(cat "$TMP/logs/test.log")"
	ok "helm test: $(grep -m1 '^Phase:' "$TMP/logs/test.log" | tr -s ' ') ($(grep -m1 'ready endpoints' "$TMP/logs/kubelet.log"))"
	wait_for "the test pod deleted (hook-succeeded)" 30 bash -c "! kubectl get pod '$RELEASE-test-readyz' -n '$NS'"
	ok "the test pod is deleted after success (hook-delete-policy)"

	live_jobs_namespaced

	step "helm upgrade (rbac.scope=cluster, allowedNamespaces={*}, logLevel=debug)"
	"$HELM" upgrade "$RELEASE" chart/ -n "$NS" --reuse-values --set rbac.scope=cluster --set 'allowedNamespaces={*}' --set logLevel=debug \
		--wait --timeout 120s >"$TMP/logs/upgrade.log" 2>&1 || fail "helm upgrade: $(cat "$TMP/logs/upgrade.log")"
	grep -q 'REVISION: 3' "$TMP/logs/upgrade.log" || fail "helm upgrade: not revision 3"
	[[ $(kc get deployment "$RELEASE" -n "$NS" -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="LOG_LEVEL")].value}') == debug ]] ||
		fail "helm upgrade: LOG_LEVEL is not debug"
	kc rollout status deployment/"$RELEASE" -n "$NS" --timeout=60s >/dev/null || fail "helm upgrade: rollout"
	ok "revision 3 rolled out with LOG_LEVEL=debug (the job entries of revision 2 kept)"
	local left
	left=$(kc get roles,rolebindings -A -l "app.kubernetes.io/instance=$RELEASE" \
		-o jsonpath='{range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{"\n"}{end}' | sort)
	local want_left
	want_left=$(printf '%s\n' "Role/$NS/$LEASES_NAME" "RoleBinding/$NS/$LEASES_NAME" \
		Role/{batch-ops,remediation-jobs}/"$JOBS_NAME" RoleBinding/{batch-ops,remediation-jobs}/"$JOBS_NAME" | sort)
	[[ $left == "$want_left" ]] ||
		fail "after the upgrade the Roles/RoleBindings are ${left//$'\n'/ }; want only $LEASES_NAME in $NS and $JOBS_NAME in batch-ops, remediation-jobs"
	expect_rules4 clusterrole "$CLUSTER_NAME" "" "$WANT_RULES4$J_JOBS$J_LOG$J_SECRETS_TARGET$G_CLUSTER_SUSPEND4" \
		"the rules above, and the job entries without a namespace: create,get,watch,delete jobs; get pods/log; get secrets cache-admin, locust-secret; get,list,update Flux's and Argo CD's owners (a suspend policy)"
	[[ -z $(kc get clusterroles,clusterrolebindings -l "app.kubernetes.io/instance=$RELEASE" -o name | grep -F "/$GITOPS_NAME") ]] ||
		fail "cluster scope: ClusterRole $GITOPS_NAME is still there"
	expect_rules4 role "$JOBS_NAME" remediation-jobs "$J_JOBS$J_LOG$J_SECRETS_RJ" \
		"create,get,watch,delete jobs; get pods/log; get secrets jobs-token (list pods, create events: the ClusterRole)"
	expect_rules4 role "$JOBS_NAME" batch-ops "$J_JOBS$J_LOG" "create,get,watch,delete jobs; get pods/log; no secrets"
	expect_binding "$JOBS_NAME" remediation-jobs
	expect_binding "$JOBS_NAME" batch-ops
	expect_lease_rules "$LEASES_NAME" "$NS" "$SA"
	ok "the namespaced Roles/RoleBindings (those in flux-system and argocd, and ClusterRole $GITOPS_NAME, too) are gone; the Leases' Role in $NS and the job namespaces' Roles stay"
	pod_env_checks "deployment/$RELEASE" '*'
	JOB_RULES=yes GITOPS_UPDATE=yes can_matrix_cluster "$SA_USER"
	can_matrix_jobs_cluster "$SA_USER"
	wait_for "RBAC: update deployments/scale in other-ns" 20 \
		kubectl auth can-i update deployments --subresource=scale -n other-ns --as "$SA_USER"
	trigger scale '{"replicas":"+1"}' other ns carts
	expect_finished "$ID" succeeded pass "scaled deployment other-ns/carts from 1 to 2 replicas"
	[[ $(replicas_of other-ns carts) == 2 ]] || fail "other-ns/carts is not at 2 replicas"
	n=$(audit_events other-ns carts Scaled)
	((n == 1)) || fail "$n audit Events (Scaled) on other-ns/carts, want 1"
	ok "with cluster scope, the same token scales other-ns/carts to 2 (1 audit Event in other-ns)"
	expect_leases
	stop_pid "$TMP/pids/provider"
	stop_pid "$TMP/pids/sink"
	local errors
	errors=$(grep 'level=error' "$TMP/logs/provider.log" | grep -v 'forbidden' || true)
	[[ -z $errors ]] || fail "the provider logged unexpected errors: $(head -n 3 <<<"$errors")"
	errors=$(grep -E 'could not record the event|audit event not recorded|could not release' "$TMP/logs/provider.log" || true)
	[[ -z $errors ]] || fail "the provider could not write its Leases or audit Events: $(head -n 3 <<<"$errors")"
	ok "provider stopped; no unexpected error in its log, and every Lease and audit Event was written"

	live_nats_checks

	step "helm uninstall"
	"$HELM" uninstall "$RELEASE" -n "$NS" --wait --timeout 60s >"$TMP/logs/uninstall.log" 2>&1 ||
		fail "helm uninstall: $(cat "$TMP/logs/uninstall.log")"
	wait_for "objects of release $RELEASE gone" 60 no_release_objects "$RELEASE"
	ok "kubectl get all,sa,role,rolebinding,clusterrole,clusterrolebinding,pdb,networkpolicy,servicemonitor,cm,secret -A -l app.kubernetes.io/instance=$RELEASE: nothing"
	! "$HELM" status "$RELEASE" -n "$NS" >/dev/null 2>&1 || fail "helm still knows release $RELEASE"
	ok "helm has no release $RELEASE"

	step "stop the control plane"
	"$CONTROLPLANE" stop "$TMP/cp" >/dev/null 2>&1
	step ""
}

# live_jobs_namespaced: helm upgrade -f test/deploy/values-jobs.yaml (job
# entries, rbac.scope=namespaced kept): their exact rules where their Jobs
# run, and the can-i matrix.
live_jobs_namespaced() {
	step "helm upgrade -f test/deploy/values-jobs.yaml -f test/deploy/values-gitops.yaml (job entries, the gates' sections; rbac.scope=namespaced)"
	# No --wait: the RBAC is in place when helm returns; the pods the catalog's
	# checksum rolls are waited for by the next upgrade.
	"$HELM" upgrade "$RELEASE" chart/ -n "$NS" --reuse-values -f test/deploy/values-jobs.yaml -f test/deploy/values-gitops.yaml \
		>"$TMP/logs/upgrade-jobs.log" 2>&1 || fail "helm upgrade -f test/deploy/values-jobs.yaml -f test/deploy/values-gitops.yaml: $(cat "$TMP/logs/upgrade-jobs.log")"
	grep -q 'REVISION: 2' "$TMP/logs/upgrade-jobs.log" || fail "helm upgrade -f test/deploy/values-jobs.yaml: not revision 2"
	expect_rules4 role "$CLUSTER_NAME" sockshop-production "$WANT_RULES4$J_JOBS$J_LOG$J_SECRETS_TARGET" \
		"the rules above, and the job entries without a namespace: create,get,watch,delete jobs; get pods/log; get secrets cache-admin, locust-secret"
	expect_rules4 role "$JOBS_NAME" remediation-jobs "$J_JOBS$J_PODS$J_LOG$J_SECRETS_RJ$J_EVENTS" \
		"create,get,watch,delete jobs; list pods; get pods/log; get secrets jobs-token; create events"
	expect_rules4 role "$JOBS_NAME" batch-ops "$J_JOBS$J_PODS$J_LOG$J_EVENTS" \
		"create,get,watch,delete jobs; list pods; get pods/log; create events; no secrets"
	expect_binding "$JOBS_NAME" remediation-jobs
	expect_binding "$JOBS_NAME" batch-ops
	[[ -z $(kc get roles -n other-ns -o name) ]] || fail "job entries, namespaced scope: RBAC in other-ns"
	ok "RoleBindings $JOBS_NAME in remediation-jobs, batch-ops bind $SA; nothing in other-ns"
	# values-gitops.yaml: gitops.policy suspend, Flux in flux-system, Argo CD in argocd.
	expect_rules4 role "$GITOPS_NAME" flux-system "$G_FLUX_NS4" "get,update kustomizations, helmreleases (rbac.gitops.fluxNamespaces, a suspend policy)"
	expect_rules4 role "$GITOPS_NAME" argocd "$G_ARGO_NS4" "get,list,update applications (the catalog's gitops.argocdNamespaces)"
	expect_rules4 clusterrole "$GITOPS_NAME" "" "$G_LIST4" "list kustomizations, helmreleases (Maintain's due suspensions, in all namespaces)"
	[[ $(kc get clusterrolebinding "$GITOPS_NAME" -o jsonpath='{.roleRef.kind}/{.roleRef.name} {range .subjects[*]}{.kind}:{.namespace}:{.name}{end}') == "ClusterRole/$GITOPS_NAME ServiceAccount:$NS:$SA" ]] ||
		fail "ClusterRoleBinding $GITOPS_NAME does not bind $SA"
	expect_binding "$GITOPS_NAME" flux-system
	expect_binding "$GITOPS_NAME" argocd
	[[ $(kc get clusterroles -l "app.kubernetes.io/instance=$RELEASE" -o name) == "clusterrole.rbac.authorization.k8s.io/$GITOPS_NAME" ]] ||
		fail "namespaced scope: cluster-wide RBAC other than $GITOPS_NAME: $(kc get clusterroles -l "app.kubernetes.io/instance=$RELEASE" -o name)"
	ok "RoleBindings $GITOPS_NAME in flux-system, argocd and ClusterRoleBinding $GITOPS_NAME bind $SA; no other cluster-wide RBAC"
	pod_env_checks "deployment/$RELEASE" sockshop-production,batch-ops,remediation-jobs
	wait_for "RBAC: create jobs in remediation-jobs" 20 kubectl auth can-i create jobs.batch -n remediation-jobs --as "$SA_USER"
	can_matrix_jobs_namespaced "$SA_USER"
	say "GitOps owners: RBAC as $SA_USER"
	wait_for "RBAC: update kustomizations in flux-system" 20 kubectl auth can-i update kustomizations.kustomize.toolkit.fluxcd.io -n flux-system --as "$SA_USER"
	can_all "$SA_USER" <<-EOF
		yes get kustomizations.kustomize.toolkit.fluxcd.io flux-system
		yes update kustomizations.kustomize.toolkit.fluxcd.io flux-system
		yes get helmreleases.helm.toolkit.fluxcd.io flux-system
		yes update helmreleases.helm.toolkit.fluxcd.io flux-system
		yes list kustomizations.kustomize.toolkit.fluxcd.io --all
		yes list helmreleases.helm.toolkit.fluxcd.io --all
		yes get applications.argoproj.io argocd
		yes list applications.argoproj.io argocd
		yes update applications.argoproj.io argocd
		no get kustomizations.kustomize.toolkit.fluxcd.io other-ns
		no update helmreleases.helm.toolkit.fluxcd.io other-ns
		no get kustomizations.kustomize.toolkit.fluxcd.io --all
		no patch kustomizations.kustomize.toolkit.fluxcd.io flux-system
		no delete helmreleases.helm.toolkit.fluxcd.io flux-system
		no watch kustomizations.kustomize.toolkit.fluxcd.io flux-system
		no get applications.argoproj.io flux-system
		no get applications.argoproj.io other-ns
		no list applications.argoproj.io --all
		no delete applications.argoproj.io argocd
		no get secrets argocd
		no get gitrepositories.source.toolkit.fluxcd.io flux-system
	EOF
}

# live_nats_checks: helm upgrade to transport=nats, then the provider binary
# with that Deployment's environment against a real nats-server.
live_nats_checks() {
	step "helm upgrade --set transport=nats,heartbeatPeriod=2s,catalog=null (no sidecar; the built-in catalog)"
	# catalog=null drops values-jobs.yaml's catalog from the reused values;
	# --reset-then-reuse-values, because --reuse-values would take the old
	# values as the chart's defaults and so bring it back.
	"$HELM" upgrade "$RELEASE" chart/ -n "$NS" --reset-then-reuse-values --set transport=nats --set heartbeatPeriod=2s --set catalog=null \
		--wait --timeout 120s >"$TMP/logs/upgrade-nats.log" 2>&1 || fail "helm upgrade to transport=nats: $(cat "$TMP/logs/upgrade-nats.log")"
	grep -q 'REVISION: 4' "$TMP/logs/upgrade-nats.log" || fail "helm upgrade to transport=nats: not revision 4"
	grep -qF 'straight from NATS, with no sidecar' "$TMP/logs/upgrade-nats.log" || fail "helm upgrade to transport=nats: NOTES.txt does not say so"
	kc rollout status deployment/"$RELEASE" -n "$NS" --timeout=60s >/dev/null || fail "helm upgrade to transport=nats: rollout"
	local jp='{.spec.template.spec.containers[*].name}|{.spec.template.spec.terminationGracePeriodSeconds}|{.spec.template.spec.containers[0].lifecycle}'
	local got
	got=$(kc get deployment "$RELEASE" -n "$NS" -o jsonpath="$jp")
	[[ $got == "action-provider|90|" ]] || fail "after the upgrade to transport=nats the Deployment is '$got', want one container, grace period 90, no preStop"
	[[ $(kc get pods -n "$NS" -l "app.kubernetes.io/instance=$RELEASE" -o jsonpath='{range .items[*]}{.spec.containers[*].name}{"\n"}{end}' | sort -u) == action-provider ]] ||
		fail "after the upgrade to transport=nats a pod still has another container"
	pod_env_checks "deployment/$RELEASE" '*'
	ok "revision 4 rolled out: one container (action-provider), grace period 90, no preStop; NOTES.txt describes the nats transport"
	# The built-in catalog again: no job entry, so no job permission, in
	# cluster scope too.
	got=$(kc get roles,rolebindings -A -l "app.kubernetes.io/instance=$RELEASE" \
		-o jsonpath='{range .items[*]}{.kind}/{.metadata.namespace}/{.metadata.name}{"\n"}{end}' | sort)
	[[ $got == "Role/$NS/$LEASES_NAME"$'\n'"RoleBinding/$NS/$LEASES_NAME" ]] ||
		fail "with the built-in catalog again the Roles/RoleBindings are ${got//$'\n'/ }; want only $LEASES_NAME in $NS"
	expect_rules clusterrole "$CLUSTER_NAME" "" "$G_CLUSTER"
	ok "the built-in catalog again: the job namespaces' Roles are gone, the ClusterRole has no job rule, and no update on the GitOps owners"
	wait_for "RBAC: no create jobs in other-ns" 20 bash -c "! kubectl auth can-i create jobs.batch -n other-ns --as '$SA_USER'"
	can_no_jobs "$SA_USER"
	can_all "$SA_USER" <<-EOF
		yes get kustomizations.kustomize.toolkit.fluxcd.io flux-system
		no update kustomizations.kustomize.toolkit.fluxcd.io flux-system
		no update applications.argoproj.io argocd
	EOF
	# The provider container's environment, as the pod gets it.
	local -a chart_env
	mapfile -t chart_env < <(kc get deployment "$RELEASE" -n "$NS" \
		-o jsonpath='{range .spec.template.spec.containers[?(@.name=="action-provider")].env[*]}{.name}={.value}{"\n"}{end}' |
		grep -vE '^(POD_NAMESPACE|POD_NAME)=')
	local want
	for want in TRANSPORT=nats NATS_URL=nats://keptn-nats NATS_QUEUE_GROUP=action-provider HEARTBEAT_PERIOD=2s; do
		printf '%s\n' "${chart_env[@]}" | grep -qxF "$want" || fail "the Deployment's environment has no $want: ${chart_env[*]}"
	done
	! printf '%s\n' "${chart_env[@]}" | grep -qE '^(RCV_HOST|EVENTBROKER)=' || fail "the Deployment's environment still has the receiver or EVENTBROKER"
	ok "the Deployment's environment: TRANSPORT=nats, NATS_URL=nats://keptn-nats, NATS_QUEUE_GROUP=action-provider, HEARTBEAT_PERIOD=2s; no RCV_*, no EVENTBROKER"

	step "the provider in nats mode (the Deployment's environment) against nats-server"
	local ports nats_port ops_port url
	ports=$("$TMP/bin/keptnsim" freeport 2)
	nats_port=$(sed -n 1p <<<"$ports")
	ops_port=$(sed -n 2p <<<"$ports")
	url="nats://127.0.0.1:$nats_port"
	# As the pod, except: NATS where it runs here, the ops port, the pod's
	# downward-API variables, text logs, and ACTION_COOLDOWN=0s (carts in
	# other-ns was just scaled).
	env -i PATH="$PATH" HOME="$TMP" KUBECONFIG="$TMP/sa.kubeconfig" "${chart_env[@]}" \
		NATS_URL="$url" OPS_PORT="$ops_port" POD_NAMESPACE="$NS" POD_NAME=action-provider-nats-sh \
		LOG_FORMAT=text LOG_LEVEL=debug ACTION_COOLDOWN=0s \
		"$TMP/bin/action-provider" >"$TMP/logs/provider-nats.log" 2>&1 &
	echo $! >"$TMP/pids/provider"
	wait_for "provider /healthz" 20 "$TMP/bin/keptnsim" get "http://127.0.0.1:$ops_port/healthz"
	sleep 1
	! "$TMP/bin/keptnsim" get "http://127.0.0.1:$ops_port/readyz" >/dev/null 2>&1 || fail "the provider is ready without NATS"
	ok "with no NATS server yet: /healthz ok, /readyz 503 (the connection retries)"
	"$NATS_SERVER" -a 127.0.0.1 -p "$nats_port" >"$TMP/logs/nats-server.log" 2>&1 &
	echo $! >"$TMP/pids/nats"
	wait_for "provider /readyz once NATS is up" 30 "$TMP/bin/keptnsim" get "http://127.0.0.1:$ops_port/readyz"
	grep -q 'connected to NATS' "$TMP/logs/provider-nats.log" || fail "the provider did not log its connection to NATS"
	ok "nats-server $url started: the provider connected and turned ready"
	"$TMP/bin/keptnsim" natssink -url "$url" -out "$TMP/nats-events.jsonl" -ready-file "$TMP/natssink.ready" \
		>"$TMP/logs/natssink.log" 2>&1 &
	echo $! >"$TMP/pids/natssink"
	wait_for "NATS sink subscribed" 10 test -e "$TMP/natssink.ready"
	local f="$TMP/event-nats.json" id from
	from=$(replicas_of other-ns carts)
	id=$("$TMP/bin/keptnsim" event -project other -stage ns -service carts -action scale -value '{"replicas":"+1"}' -out "$f") ||
		fail "keptnsim event"
	"$TMP/bin/keptnsim" natspub "$url" "$f" 2 || fail "publish to NATS"
	POSTED=$((POSTED + 1))
	EVENTS_FILE="$TMP/nats-events.jsonl" expect_finished "$id" succeeded pass "scaled deployment other-ns/carts from $from to $((from + 1)) replicas" 60s
	[[ $(replicas_of other-ns carts) == $((from + 1)) ]] || fail "nats mode: other-ns/carts is not at $((from + 1)) replicas"
	grep -q 'duplicate delivery' "$TMP/logs/provider-nats.log" || fail "nats mode: the second copy of the event was not recognised as a duplicate"
	ok "an action.triggered published twice on NATS ran once (one started, one finished on NATS): other-ns/carts $from -> $((from + 1))"
	got=$(kc get leases -n "$NS" -l keptn-action-provider.io/record=replica \
		-o jsonpath='{range .items[*]}{.spec.holderIdentity}/{.spec.leaseDurationSeconds}{"\n"}{end}')
	# The holder is the replica's name and a nonce per process (internal/ledger).
	grep -qxE 'action-provider-nats-sh(\.[0-9a-f]+)?/6' <<<"$got" || fail "no heartbeat Lease of action-provider-nats-sh lasting 3 x 2s: ${got//$'\n'/ }"
	ok "heartbeat Lease of replica action-provider-nats-sh in $NS: 6 s = 3 x heartbeatPeriod (2s)"
	expect_leases
	stop_pid "$TMP/pids/provider"
	grep -q 'msg=stopped' "$TMP/logs/provider-nats.log" || fail "nats mode: the provider did not stop cleanly on SIGTERM"
	local errors
	errors=$(grep 'level=error' "$TMP/logs/provider-nats.log" || true)
	[[ -z $errors ]] || fail "the provider in nats mode logged errors: $(head -n 3 <<<"$errors")"
	stop_pid "$TMP/pids/natssink"
	stop_pid "$TMP/pids/nats"
	ok "provider stopped on SIGTERM; no error in its log"
}

# ------------------------------------------------------------------ main ---

if [[ ${1:-} == --live ]]; then
	# Re-executed by the main script (possibly in a network namespace).
	: "${TMP:?}" "${HELM:?}"
	cd "$ROOT"
	live_checks
	exit 0
fi
[[ $# -eq 0 ]] || {
	echo "usage: test/deploy.sh" >&2
	exit 2
}

T0=$(now_ms)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/action-provider-deploy.XXXXXX")
export TMP
cleanup() {
	local rc=$?
	# The live part cleans up after itself; this is the safety net.
	for f in "$TMP"/pids/*; do [[ -e $f ]] && stop_pid "$f"; done
	"$CONTROLPLANE" stop "$TMP/cp" >/dev/null 2>&1 || true
	if [[ ${DEPLOY_KEEP:-0} == 1 || $rc -ne 0 ]]; then
		echo "deploy: files kept in $TMP" >&2
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Helm keeps its own state here, not in ~/.config/helm.
export HELM_CACHE_HOME="$TMP/helm/cache" HELM_CONFIG_HOME="$TMP/helm/config" HELM_DATA_HOME="$TMP/helm/data"
mkdir -p "$TMP/bin"
: >"$TMP/checks"
: >"$TMP/timings"

step "tools: helm $HELM_VERSION, the provider, keptnsim"
install_helm
ok "helm $("$HELM" version --template '{{.Version}}') ($HELM_BUILD)"
CGO_ENABLED=0 go build -trimpath -tags nosandbox -o "$TMP/bin/action-provider" ./cmd/action-provider ||
	fail "go build ./cmd/action-provider"
go build -o "$TMP/bin/keptnsim" ./test/deploy/keptnsim || fail "go build ./test/deploy/keptnsim"
ok "built action-provider (-tags nosandbox, as in the image) and keptnsim"
NATS_SERVER=$("$NATS_SERVER_SH") || fail "test/nats/nats-server.sh could not install nats-server"
ok "$("$NATS_SERVER" --version) ($NATS_SERVER)"
export HELM NATS_SERVER

static_checks

# The live part: in a private network namespace if possible, so that nothing
# it starts (the provider's ops port binds all interfaces) is reachable from
# outside; the control plane and everything else use 127.0.0.1 only.
step ""
netns=${DEPLOY_NETNS:-auto}
runner=()
if [[ $netns != off ]] && command -v unshare >/dev/null && command -v ip >/dev/null &&
	unshare --net true 2>/dev/null; then
	runner=(unshare --net --)
	export DEPLOY_IN_NETNS=1
	say "live checks run in a private network namespace (unshare --net)"
elif [[ $netns == on ]]; then
	fail "DEPLOY_NETNS=on, but unshare --net (or ip) is not available"
else
	export DEPLOY_IN_NETNS=0
	say "live checks run in the host network namespace (no unshare --net): the provider's ops port binds all interfaces while they run"
fi
# timeout runs the live part in its own process group, which a Ctrl-C at the
# terminal does not reach: forward INT/TERM to timeout, which passes them on
# to the whole group (helm, kubectl, the provider...); the live part's own
# trap then stops the control plane. Wait for that before cleaning up.
timeout --kill-after=15 "${DEPLOY_TIMEOUT:-600}" "${runner[@]}" bash "$0" --live &
LIVE_PID=$!
SIGNALLED=""
forward() {
	SIGNALLED=$1
	echo "deploy: $1: stopping the live checks" >&2
	kill "-$1" "$LIVE_PID" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM
live_rc=0
while :; do
	live_rc=0
	wait "$LIVE_PID" || live_rc=$?
	kill -0 "$LIVE_PID" 2>/dev/null || break # else a signal interrupted wait
done
trap 'exit 130' INT
trap 'exit 143' TERM
case $SIGNALLED in
INT) exit 130 ;;
TERM) exit 143 ;;
esac
((live_rc != 124)) || fail "the live checks took longer than ${DEPLOY_TIMEOUT:-600}s"
((live_rc == 0)) || exit "$live_rc"

say "summary"
total=$(($(now_ms) - T0))
awk -F'\t' '{printf "   %6.1f s  %s\n", $2 / 1000, $1}' "$TMP/timings"
printf '   %6.1f s  total; %d checks passed; helm %s\n' "$(awk -v t="$total" 'BEGIN{print t/1000}')" "$(wc -l <"$TMP/checks")" "$HELM_BUILD"
echo "deploy: ok"
