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

{{/* The distributor needs up to 10s to stop after its preStop, so the pod's
grace period must cover drain + 10; the default adds 15. */}}
{{- define "ap.terminationGracePeriodSeconds" -}}
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

{{/* Checks across values that the schema cannot express clearly. */}}
{{- define "ap.validate" -}}
{{- if lt (int .Values.scale.maxReplicas) (int .Values.scale.minReplicas) }}
{{- fail (printf "scale.maxReplicas (%d) must not be below scale.minReplicas (%d)" (int .Values.scale.maxReplicas) (int .Values.scale.minReplicas)) }}
{{- end }}
{{- if lt (add .Values.shutdownGraceSeconds .Values.shutdownFlushSeconds | int) (include "ap.drainSeconds" . | int) | not }}
{{- fail (printf "distributor.drainSeconds (%s) must exceed shutdownGraceSeconds + shutdownFlushSeconds (%d): the distributor must outlive the provider's drain" (include "ap.drainSeconds" .) (add .Values.shutdownGraceSeconds .Values.shutdownFlushSeconds | int)) }}
{{- end }}
{{- if and .Values.rbac.create (eq .Values.rbac.scope "namespaced") (empty .Values.rbac.namespaces) }}
{{- fail "rbac.scope=namespaced needs rbac.namespaces: the <project>-<stage> namespaces the provider may act on, e.g. --set 'rbac.namespaces={sockshop-production}'" }}
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

{{/* The RBAC rules: exactly what the code calls today; each new action adds its rules. */}}
{{- define "ap.rules" -}}
# internal/workload/workload.go (Resolve -> desired): GET the Deployment or
# StatefulSet named by the event, to find the target ("<service>", then
# "<service>-primary").
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get"]
# internal/action/scale/scale.go (Run): GetScale and UpdateScale (PUT) of the
# scale subresource; replicas are never written any other way.
- apiGroups: ["apps"]
  resources: ["deployments/scale", "statefulsets/scale"]
  verbs: ["get", "update"]
{{- end }}
