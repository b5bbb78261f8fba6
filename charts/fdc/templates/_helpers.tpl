{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "fdc.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "fdc.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s-operator" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Selector labels of the operator pods. */}}
{{- define "fdc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fdc.name" . }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "fdc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fdc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "fdc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fdc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Operator image reference. */}}
{{- define "fdc.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Refuses value combinations that cannot work, at template time (helm install/upgrade/template
fail with this message instead of installing something broken).
*/}}
{{- define "fdc.validate" -}}
{{- if not .Values.image.repository }}
{{- fail "image.repository is not set. No public fdc-operator image is published: build and push the images first (scripts/images.sh --push REGISTRY; see \"On Kubernetes\" in README.md), then install with --set image.repository=REGISTRY/fdc-operator --set image.tag=TAG" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail (printf "replicaCount=%v needs leaderElection.enabled=true: without the Lease every replica would reconcile the same objects at once. Set replicaCount=1, or leave leader election on" .Values.replicaCount) }}
{{- end }}
{{- if and .Values.exampleKernel.enabled (not .Values.exampleKernel.image) }}
{{- fail "exampleKernel.enabled=true needs exampleKernel.image (e.g. --set exampleKernel.image=REGISTRY/fdc-kernel:TAG, the kernel image scripts/images.sh pushed)" }}
{{- end }}
{{- end }}
