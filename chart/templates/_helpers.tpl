{{/* Name of the chart, or nameOverride. */}}
{{- define "ap.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: fullnameOverride, else release name (+ chart name unless it contains it). */}}
{{- define "ap.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of cluster-scoped objects: unique per release namespace. */}}
{{- define "ap.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "ap.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ap.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ap.selectorLabels" . }}
app.kubernetes.io/version: {{ include "ap.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keptn
app.kubernetes.io/component: action-provider
{{- end }}

{{- define "ap.version" -}}
{{- .Values.image.tag | default .Chart.AppVersion | trunc 63 }}
{{- end }}

{{- define "ap.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ap.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ap.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* Seconds the distributor's preStop waits. */}}
{{- define "ap.drainSeconds" -}}
{{- if .Values.distributor.drainSeconds }}
{{- .Values.distributor.drainSeconds }}
{{- else }}
{{- add .Values.shutdownGraceSeconds .Values.shutdownFlushSeconds 5 }}
{{- end }}
{{- end }}

{{/* Sidecar: the distributor needs up to 10s to stop after its preStop, so
the pod's grace period must cover drain + 10; the default adds 15.
NATS: the provider alone, which on SIGTERM drains its subscription (at most
5s), lets actions run for SHUTDOWN_GRACE, gives their finished events
SHUTDOWN_FLUSH, then flushes NATS' publish buffer for up to SHUTDOWN_FLUSH
again: at least grace + 2 x flush + 5; the default adds 5 more. */}}
{{- define "ap.terminationGracePeriodSeconds" -}}
{{- if eq .Values.transport "nats" }}
{{- $need := add .Values.shutdownGraceSeconds (mul 2 .Values.shutdownFlushSeconds) 5 | int }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- if lt (int .Values.terminationGracePeriodSeconds) $need }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least %d with transport=nats: shutdownGraceSeconds + 2 x shutdownFlushSeconds + 5 (the subscription's drain, the grace, the last finished events, NATS' publish buffer)" (int .Values.terminationGracePeriodSeconds) $need) }}
{{- end }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $need 5 }}
{{- end }}
{{- else }}
{{- $drain := include "ap.drainSeconds" . | int }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (add $drain 10 | int) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least the distributor's drain time (%d s: shutdownGraceSeconds + shutdownFlushSeconds + 5, or distributor.drainSeconds) + 10" (int .Values.terminationGracePeriodSeconds) $drain) }}
{{- end }}
{{- .Values.terminationGracePeriodSeconds }}
{{- else }}
{{- add $drain 15 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Checks across values that the schema cannot express clearly. */}}
{{- define "ap.validate" -}}
{{- if lt (int .Values.scale.maxReplicas) (int .Values.scale.minReplicas) }}
{{- fail (printf "scale.maxReplicas (%d) must not be below scale.minReplicas (%d)" (int .Values.scale.maxReplicas) (int .Values.scale.minReplicas)) }}
{{- end }}
{{- if and (ne .Values.transport "nats") (lt (add .Values.shutdownGraceSeconds .Values.shutdownFlushSeconds | int) (include "ap.drainSeconds" . | int) | not) }}
{{- fail (printf "distributor.drainSeconds (%s) must exceed shutdownGraceSeconds + shutdownFlushSeconds (%d): the distributor must outlive the provider's drain" (include "ap.drainSeconds" .) (add .Values.shutdownGraceSeconds .Values.shutdownFlushSeconds | int)) }}
{{- end }}
{{- if ge (include "ap.seconds" .Values.verifyTimeout | float64) (include "ap.seconds" .Values.actionTimeout | float64) }}
{{- fail (printf "verifyTimeout (%s) must be below actionTimeout (%s): a slow rollout must be reported as such before the action times out" .Values.verifyTimeout .Values.actionTimeout) }}
{{- end }}
{{- if and .Values.rbac.create (eq .Values.rbac.scope "namespaced") (empty .Values.rbac.namespaces) }}
{{- fail "rbac.namespaces is empty: the provider acts only where it is told to. Name the <project>-<stage> namespaces it may act on, e.g. --set 'rbac.namespaces={sockshop-production}' (rbac.scope=namespaced, the default), or opt in to cluster-wide RBAC with --set rbac.scope=cluster and allowedNamespaces or namespaceOptInLabel" }}
{{- end }}
{{- if and (eq .Values.rbac.scope "cluster") (empty .Values.allowedNamespaces) (not .Values.namespaceOptInLabel) }}
{{- fail "rbac.scope=cluster with neither allowedNamespaces nor namespaceOptInLabel: the provider would act nowhere. Set allowedNamespaces (e.g. --set 'allowedNamespaces={sockshop-*}', or {*} for every namespace but the protected ones) or namespaceOptInLabel (e.g. keptn-action-provider.io/remediation=enabled)" }}
{{- end }}
{{- if and .Values.namespaceOptInLabel (ne .Values.rbac.scope "cluster") }}
{{- fail (printf "namespaceOptInLabel (%s) needs rbac.scope=cluster: with namespaced RBAC the provider may act only in rbac.namespaces, whatever a namespace's labels say" .Values.namespaceOptInLabel) }}
{{- end }}
{{- if and .Values.rbac.create (eq .Values.rbac.scope "namespaced") (include "ap.gitopsSuspend" .) (empty (include "ap.gitopsNamespaces" . | fromJson)) }}
{{- fail "the catalog's gitops policy is suspend (gitops.policy or an entry's guardrails.gitops), but with rbac.scope=namespaced the provider may read and update no Flux or Argo CD owner: name their namespaces with rbac.gitops.fluxNamespaces (e.g. {flux-system}) and the catalog's gitops.argocdNamespaces (e.g. [argocd]), or use rbac.scope=cluster" }}
{{- end }}
{{- if eq .Values.transport "nats" }}
{{- if .Values.distributor.keptnApiEndpoint }}
{{- fail (printf "transport=nats does not work with distributor.keptnApiEndpoint (%s): a remote execution plane has no NATS to subscribe to, only the Keptn API, which the distributor sidecar polls. Use transport=sidecar there, or unset distributor.keptnApiEndpoint and set nats.url" .Values.distributor.keptnApiEndpoint) }}
{{- end }}
{{- $filters := list }}
{{- range $f := list "projectFilter" "stageFilter" "serviceFilter" }}
{{- if get $.Values.distributor $f }}
{{- $filters = append $filters (printf "distributor.%s" $f) }}
{{- end }}
{{- end }}
{{- with $filters }}
{{- fail (printf "%s set with transport=nats: the distributor's filters do nothing there, the provider takes every action.triggered. Unset them, and narrow what it may change with allowedNamespaces (and rbac.scope=namespaced)" (join ", " .)) }}
{{- end }}
{{- if and .Values.nats.tlsClientCert (not .Values.nats.tlsSecret) }}
{{- fail "nats.tlsClientCert=true needs nats.tlsSecret: the Secret holding ca.crt, tls.crt and tls.key" }}
{{- end }}
{{- end }}
{{- with .Values.heartbeatPeriod }}
{{- if le (include "ap.seconds" . | float64) 0.0 }}
{{- fail (printf "heartbeatPeriod (%s) must be a positive duration such as 10s" .) }}
{{- end }}
{{- end }}
{{- if .Values.distributor.keptnApiEndpoint }}
{{- if not .Values.distributor.keptnApiTokenSecret }}
{{- fail "distributor.keptnApiEndpoint is set (remote execution plane) but distributor.keptnApiTokenSecret is not: name an existing Secret holding the Keptn API token" }}
{{- end }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount > 1 with distributor.keptnApiEndpoint: polling distributors share no queue group, so every replica would run every action" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The rules in the namespaces the provider acts on (a ClusterRole in
cluster scope, a Role in each of rbac.namespaces in namespaced scope): exactly
what the actions call, each rule naming the code that needs it. No delete, no
secrets, no wildcards: those come only with job entries in the catalog
(ap.jobRules). Watch only on the workload kinds, by name, for the approval
gate. The Argo Rollouts and KEDA rules are unconditional: whether a target is
a Rollout, or autoscaled by KEDA, is known only when an event names it. */}}
{{- define "ap.rules" -}}
# internal/workload/workload.go (Resolve, Object, Desired) and
# internal/rollout/rollout.go (Check): GET the workload named by the event
# (also "<service>-primary"), its annotations for the guards, and its rollout
# status after a change. internal/action/restart/restart.go (Mutate):
# strategic-merge PATCH of the pod template's restartedAt annotation;
# internal/action/rollback/deployment.go, history.go: PATCH the template back
# to the previous revision (kubectl rollout undo).
# internal/gate/approval/target.go (open, close, await, follow): merge-PATCH
# the approval-pending annotations onto the target, JSON-PATCH them away
# (each removal testing its value), GET it and WATCH it (fieldSelector
# metadata.name) until a person's approve or reject annotation names the run.
# internal/rollout/watch.go (Wait): LIST and WATCH the workload by name
# (fieldSelector metadata.name), as kubectl rollout status does.
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "patch", "watch"]
# internal/action/scale/scale.go (Mutate): GetScale and UpdateScale (PUT) of
# the scale subresource; replicas are never written any other way.
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "update"]
# internal/workload/pods.go (Pods, rolloutPods),
# internal/action/rollback/deployment.go: LIST a Deployment's or a Rollout's
# ReplicaSets (its pods, its revisions); internal/rollout/argo.go (aborted)
# and internal/action/rollback/rollout.go (versions): GET the stable
# ReplicaSet of an Argo Rollout; internal/rollout/watch.go: WATCH them while
# a rollout is verified.
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["get", "list", "watch"]
# internal/action/rollback/history.go: LIST the ControllerRevisions of a
# StatefulSet or DaemonSet.
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["list"]
# internal/workload/pods.go (Pods): LIST the workload's pods (delete-pods,
# rollout verification); internal/action/deletepods/deletepods.go (replaced):
# GET one pod after its eviction answered 409 Conflict;
# internal/action/job/wait.go (lastPod): LIST a Job's pods (label
# batch.kubernetes.io/controller-uid), when the catalog has job entries;
# internal/rollout/watch.go: WATCH the workload's pods while it is verified.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# internal/action/deletepods/deletepods.go (evict): CREATE an Eviction, so that
# PodDisruptionBudgets are honoured; pods are never deleted directly.
- apiGroups: [""]
  resources: ["pods/eviction"]
  verbs: ["create"]
# internal/audit/audit.go (Record): CREATE a core Event on each changed
# workload, the audit record (internal/action/job/job.go (record): on each Job).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# internal/action/deletepods/deletepods.go (blame): LIST the namespace's
# budgets to name the one that refused an eviction.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list"]
# internal/action/scale/scale.go (autoscaler, autoscaled): LIST to find a
# workload's HorizontalPodAutoscaler, GET and UPDATE (PUT) its min/maxReplicas
# instead of fighting it over the replica count.
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "update"]
# Argo Rollouts, through the dynamic client. internal/workload/argo.go
# (GetRollout), internal/workload/workload.go (ResolveObjectWith): GET the
# Rollout an event names (or "<service>" when no Deployment is found);
# internal/action/restart/rollout.go (restartRollout): merge-PATCH
# spec.restartAt; internal/action/rollback/rollout.go (patchAbort): PATCH
# status.abort on the Rollout itself when its CRD has no status subresource;
# internal/gate/approval/target.go: PATCH its approval annotations and WATCH
# it by name, as for the apps kinds above; internal/rollout/watch.go: LIST and
# WATCH it by name while it is verified.
- apiGroups: ["argoproj.io"]
  resources: ["rollouts"]
  verbs: ["get", "list", "patch", "watch"]
# internal/action/rollback/rollout.go (patchAbort): merge-PATCH status.abort
# through the status subresource (kubectl argo rollouts abort).
- apiGroups: ["argoproj.io"]
  resources: ["rollouts/status"]
  verbs: ["patch"]
# internal/action/scale/rollout.go (rolloutScaler): GET and UPDATE (PUT) the
# scale subresource of a Rollout, as for deployments/scale.
- apiGroups: ["argoproj.io"]
  resources: ["rollouts/scale"]
  verbs: ["get", "update"]
# internal/keda/keda.go (Find): LIST the namespace's ScaledObjects to find the
# one scaling the target; (SetPause) merge-PATCH its paused-replicas
# annotations, carrying the resourceVersion it read; internal/keda/unpause.go
# (Maintain, unpause): LIST the ScaledObjects the provider paused (label
# selector) and PATCH the pause away when it is due. No get, update or delete.
- apiGroups: ["keda.sh"]
  resources: ["scaledobjects"]
  verbs: ["list", "patch"]
{{- end }}

{{/* Where the catalog's job entries (kind: job, internal/action/job) run, as
JSON: {"target": true if an entry has no settings.namespace, so that it runs
in the target's namespace "<project>-<stage>"; "targetSecrets": the Secrets
those entries reference; "fixed": {namespace: [the Secrets its entries
reference]} for the entries with settings.namespace, which run there only}.
The secret names are sorted and unique. The built-in catalog has no job
entry: {"target": false, "targetSecrets": [], "fixed": {}}. */}}
{{- define "ap.jobs" -}}
{{- $target := false }}
{{- $targetSecrets := list }}
{{- $fixed := dict }}
{{- range $e := dig "actions" (list) (.Values.catalog | default dict) }}
{{- if eq (toString $e.kind) "job" }}
{{- $s := $e.settings | default dict }}
{{- $names := list }}
{{- range $r := $s.secrets | default list }}
{{- with $r.secretName }}
{{- $names = append $names (toString .) }}
{{- end }}
{{- end }}
{{- with $s.namespace }}
{{- $_ := set $fixed (toString .) (concat (get $fixed (toString .) | default (list)) $names | uniq | sortAlpha) }}
{{- else }}
{{- $target = true }}
{{- $targetSecrets = concat $targetSecrets $names | uniq | sortAlpha }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson (dict "target" $target "targetSecrets" $targetSecrets "fixed" $fixed) }}
{{- end }}

{{/* The rules a job entry needs where its Jobs run, added only when the
catalog has job entries. Argument: a dict with "secrets" (the Secret names
the entries running there reference; no rule when none, never secrets
without resourceNames) and "standalone" (true for a Role of the jobs' own, in
a namespace without the rules of ap.rules: it then also gets list on pods and
create on events, which ap.rules has otherwise). */}}
{{- define "ap.jobRules" -}}
# internal/action/job/job.go (create): CREATE the Job, GET it when it exists
# (a redelivery); wait.go (wait): WATCH it (fieldSelector metadata.name) until
# Complete or Failed, GET it again when a watch ends; job.go (abandon): DELETE
# it with its pods (propagation Background) when the deadline or a shutdown
# cuts the wait short. No list, update or patch.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["create", "get", "watch", "delete"]
{{- if .standalone }}
# internal/action/job/wait.go (lastPod): LIST the Job's pods (label
# batch.kubernetes.io/controller-uid) for the outcome and the log.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list"]
{{- end }}
# internal/action/job/wait.go (apiLogs.Tail): GET the last lines of the Job's
# container log (pods/log), masked, for the finished event.
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
{{- with .secrets }}
# internal/action/job/job.go (secrets): GET each Secret the entries reference
# (settings.secrets), only to mask its values in the reported log; exactly
# those names, never a list.
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ range $i, $n := . }}{{ if $i }}, {{ end }}{{ $n | quote }}{{ end }}]
  verbs: ["get"]
{{- end }}
{{- if .standalone }}
# internal/audit/audit.go (Record), from internal/action/job/job.go (record):
# CREATE a core Event on the Job, the audit record of its start and end.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
{{- end }}

{{/* Name of the Roles + RoleBindings of job entries with settings.namespace,
in namespaces that have no other Role of the provider's. */}}
{{- define "ap.jobsName" -}}
{{- printf "%s-jobs" (include "ap.clusterName" . | trunc 58 | trimSuffix "-") }}
{{- end }}

{{/* The rules in the release's own namespace (POD_NAMESPACE), whatever
rbac.scope: the provider's memory across replicas and restarts. */}}
{{- define "ap.leaseRules" -}}
# internal/ledger/ledger.go (Claim, Lock, Hold.Release, sweep): GET, CREATE and
# UPDATE Leases (claimed events, one lock per target, cooldowns), each write
# carrying the resourceVersion it read; LIST expired claimed-event Leases and
# DELETE them. internal/gate/budget/budget.go (get, put, Maintain): GET, CREATE
# and UPDATE the Lease action-provider-budget. internal/gate/approval/target.go
# (target, open, close, await): for an approval of a kind without a target,
# CREATE the Lease "approval.<entry>.<project>-<stage>.<service>", merge-PATCH
# and JSON-PATCH its annotations, GET it and WATCH it (fieldSelector
# metadata.name) until a person decides.
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# internal/gate/budget/budget.go (event): CREATE the Warning Event
# BudgetSpent on the budget's Lease; internal/gate/approval/approval.go
# (event): CREATE the approval Events (ApprovalPending, ApprovalGranted...) on
# an approval Lease.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Whether the catalog can suspend a GitOps owner: its gitops.policy, or
an entry's guardrails.gitops, is suspend ("true" or ""). */}}
{{- define "ap.gitopsSuspend" -}}
{{- $c := .Values.catalog | default dict }}
{{- $suspend := eq (toString (dig "gitops" "policy" "" $c)) "suspend" }}
{{- range $e := dig "actions" (list) $c }}
{{- if eq (toString (dig "guardrails" "gitops" "" ($e | default dict))) "suspend" }}
{{- $suspend = true }}
{{- end }}
{{- end }}
{{- if $suspend }}true{{ end }}
{{- end }}

{{/* The GitOps gate's rules (internal/gate/gitops), on the owners Flux and
Argo CD keep. Argument: a dict with "flux", "argo" (which tools' rules),
"suspend" (update too: a suspend policy in the catalog, ap.gitopsSuspend) and
"cluster" (a ClusterRole: list on Flux's kinds too, which Maintain asks in all
namespaces at once, never in one). */}}
{{- define "ap.gitopsRules" -}}
{{- $suspend := eq (toString .suspend) "true" }}
{{- $verbs := ternary `["get", "list", "update"]` `["get", "list"]` $suspend }}
{{- if .flux }}
{{- $fluxVerbs := ternary $verbs (ternary `["get", "update"]` `["get"]` $suspend) (eq (toString .cluster) "true") }}
# internal/gate/gitops/owner.go (find, read): GET the Kustomization or
# HelmRelease named by the target's kustomize.toolkit.fluxcd.io/* or
# helm.toolkit.fluxcd.io/* labels, in the namespace they name, to tell
# whether Flux still manages it.
{{- if eq (toString .cluster) "true" }} suspend.go (Maintain): LIST those
# the provider suspended (label selector), in all namespaces, to resume them
# when due.
{{- end }}
{{- if $suspend }}
# suspend.go (suspend, resume, resumeObject): UPDATE spec.suspend and the
# record of the suspension, each write carrying the resourceVersion it read
# (a gitops policy of the catalog is suspend).
{{- else }}
# No update: no gitops policy of the catalog is suspend.
{{- end }}
- apiGroups: ["kustomize.toolkit.fluxcd.io"]
  resources: ["kustomizations"]
  verbs: {{ $fluxVerbs }}
# The same for HelmReleases (helm-controller's labels).
- apiGroups: ["helm.toolkit.fluxcd.io"]
  resources: ["helmreleases"]
  verbs: {{ $fluxVerbs }}
{{- end }}
{{- if .argo }}
# internal/gate/gitops/owner.go (application, read): GET the Application
# named by the target's argocd.argoproj.io/tracking-id annotation or instance
# label, in the catalog's gitops.argocdNamespaces; suspend.go (Maintain):
# LIST those the provider suspended (label selector) there.
{{- if $suspend }}
# suspend.go (suspend, resume, resumeObject): UPDATE
# spec.syncPolicy.automated.selfHeal and the record of the suspension (a
# gitops policy of the catalog is suspend).
{{- else }}
# No update: no gitops policy of the catalog is suspend.
{{- end }}
- apiGroups: ["argoproj.io"]
  resources: ["applications"]
  verbs: {{ $verbs }}
{{- end }}
{{- end }}

{{/* In namespaced scope, the namespaces of the GitOps owners as JSON:
{namespace: {"flux": bool, "argo": bool}}, from rbac.gitops.fluxNamespaces
and the catalog's gitops.argocdNamespaces (only when the catalog sets it). */}}
{{- define "ap.gitopsNamespaces" -}}
{{- $out := dict }}
{{- range $ns := (dig "gitops" "fluxNamespaces" (list) (.Values.rbac | default dict)) }}
{{- $_ := set $out (toString $ns) (dict "flux" true "argo" false) }}
{{- end }}
{{- range $ns := (dig "gitops" "argocdNamespaces" (list) (.Values.catalog | default dict)) }}
{{- $cur := get $out (toString $ns) | default (dict "flux" false) }}
{{- $_ := set $out (toString $ns) (dict "flux" $cur.flux "argo" true) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* Name of the Roles + RoleBindings of the GitOps gate, in namespaced
scope. */}}
{{- define "ap.gitopsName" -}}
{{- printf "%s-gitops" (include "ap.clusterName" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* Name of the Role + RoleBinding for the Leases, in the release namespace. */}}
{{- define "ap.leasesName" -}}
{{- printf "%s-leases" (include "ap.fullname" . | trunc 56 | trimSuffix "-") }}
{{- end }}

{{/* ALLOWED_NAMESPACES: allowedNamespaces comma-joined; in namespaced RBAC
scope with allowedNamespaces empty, rbac.namespaces instead, so that the
allowlist refuses (succeeded/fail) what RBAC would forbid (errored), followed
by the settings.namespace of job entries (their Role's namespaces), so that
their Jobs are not refused where the chart gave them RBAC. */}}
{{- define "ap.allowedNamespaces" -}}
{{- if and (eq .Values.rbac.scope "namespaced") (empty .Values.allowedNamespaces) }}
{{- $all := .Values.rbac.namespaces }}
{{- range $ns := (include "ap.jobs" . | fromJson).fixed | keys | sortAlpha }}
{{- if not (has $ns $all) }}
{{- $all = append $all $ns }}
{{- end }}
{{- end }}
{{- join "," $all }}
{{- else }}
{{- join "," .Values.allowedNamespaces }}
{{- end }}
{{- end }}

{{/* A Go duration, as the schema's pattern admits it ("2m30s", "1.5h"), in
seconds (a float). */}}
{{- define "ap.seconds" -}}
{{- $units := dict "ns" 0.000000001 "us" 0.000001 "µs" 0.000001 "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 }}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h)" (toString .) -1 }}
{{- $num := regexFind "^[0-9]+(\\.[0-9]+)?" . }}
{{- $total = addf $total (mulf (float64 $num) (get $units (trimPrefix $num .))) }}
{{- end }}
{{- $total }}
{{- end }}
