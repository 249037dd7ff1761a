{{/* Names. The StatefulSet's name must stay under 53 characters (pods get a
controller-revision-hash label built from it), so names are cut at 40. */}}
{{- define "flexdrive.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "flexdrive.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flexdrive.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flexdrive.storageName" -}}
{{- printf "%s-storage" (include "flexdrive.fullname" .) }}
{{- end }}

{{- define "flexdrive.gatewayName" -}}
{{- printf "%s-gateway" (include "flexdrive.fullname" .) }}
{{- end }}

{{/* The headless Service of the storage nodes: the StatefulSet's serviceName
and the DNS name every pod resolves for its SWIM seeds. */}}
{{- define "flexdrive.storageHeadlessName" -}}
{{- printf "%s-storage-headless" (include "flexdrive.fullname" .) }}
{{- end }}

{{- define "flexdrive.seeds" -}}
{{- printf "%s.%s.svc.%s:%v" (include "flexdrive.storageHeadlessName" .) .Release.Namespace .Values.clusterDomain .Values.ports.gossip }}
{{- end }}

{{- define "flexdrive.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flexdrive.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels. */}}
{{- define "flexdrive.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flexdrive.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flexdrive.labels" -}}
helm.sh/chart: {{ include "flexdrive.chart" . }}
{{ include "flexdrive.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flexdrive
{{- end }}

{{/* Component labels: call with (dict "ctx" $ "component" "storage"). */}}
{{- define "flexdrive.componentSelectorLabels" -}}
{{ include "flexdrive.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flexdrive.componentLabels" -}}
{{ include "flexdrive.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "flexdrive.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secret names: an existing Secret when given, else the chart's own. */}}
{{- define "flexdrive.clusterSecretName" -}}
{{- default (printf "%s-cluster-secret" (include "flexdrive.fullname" .)) .Values.auth.existingClusterSecret }}
{{- end }}

{{- define "flexdrive.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "flexdrive.fullname" .)) .Values.auth.existingAdminTokenSecret }}
{{- end }}

{{- define "flexdrive.rootCredentialsSecretName" -}}
{{- default (printf "%s-root-credentials" (include "flexdrive.fullname" .)) .Values.auth.existingRootCredentialsSecret }}
{{- end }}

{{/* Affinity of a component: call with
(dict "ctx" $ "component" "storage" "values" .Values.storage). */}}
{{- define "flexdrive.affinity" -}}
{{- $v := .values }}
{{- if $v.affinity }}
{{- toYaml $v.affinity }}
{{- else if eq $v.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: {{ $v.podAntiAffinityTopologyKey }}
      labelSelector:
        matchLabels:
          {{- include "flexdrive.componentSelectorLabels" . | nindent 10 }}
{{- else if eq $v.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: {{ $v.podAntiAffinityTopologyKey }}
        labelSelector:
          matchLabels:
            {{- include "flexdrive.componentSelectorLabels" . | nindent 12 }}
{{- else if ne $v.podAntiAffinity "none" }}
{{- fail (printf "%s.podAntiAffinity must be soft, hard or none (got %q)" .component $v.podAntiAffinity) }}
{{- end }}
{{- end }}

{{/* topologySpreadConstraints of a component (same arguments). */}}
{{- define "flexdrive.topologySpread" -}}
{{- $v := .values }}
{{- if $v.zoneSpread.enabled }}
- maxSkew: {{ $v.zoneSpread.maxSkew }}
  topologyKey: {{ $v.zoneSpread.topologyKey }}
  whenUnsatisfiable: {{ $v.zoneSpread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "flexdrive.componentSelectorLabels" . | nindent 6 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod annotations for annotation-based Prometheus discovery. */}}
{{- define "flexdrive.metricsPodAnnotations" -}}
{{- if .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.ports.admin | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* Environment shared by every Flexdrive container. */}}
{{- define "flexdrive.commonEnv" -}}
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: FLEXDRIVE_LOG
  value: {{ .Values.logLevel | quote }}
- name: FLEXDRIVE_CLUSTER_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "flexdrive.clusterSecretName" . }}
      key: cluster-secret
- name: FLEXDRIVE_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "flexdrive.adminTokenSecretName" . }}
      key: admin-token
{{- if .Values.legacyPeers }}
- name: FLEXDRIVE_LEGACY_PEERS
  value: "true"
{{- end }}
{{- end }}

{{/* Probes on the admin port: call with (dict "ctx" $ "values" .Values.storage). */}}
{{- define "flexdrive.probes" -}}
{{- $v := .values -}}
startupProbe:
  httpGet:
    path: {{ $v.livenessProbe.path }}
    port: admin
  periodSeconds: {{ $v.startupProbe.periodSeconds }}
  timeoutSeconds: {{ $v.livenessProbe.timeoutSeconds }}
  failureThreshold: {{ $v.startupProbe.failureThreshold }}
livenessProbe:
  httpGet:
    path: {{ $v.livenessProbe.path }}
    port: admin
  periodSeconds: {{ $v.livenessProbe.periodSeconds }}
  timeoutSeconds: {{ $v.livenessProbe.timeoutSeconds }}
  failureThreshold: {{ $v.livenessProbe.failureThreshold }}
readinessProbe:
  httpGet:
    path: {{ $v.readinessProbe.path }}
    port: admin
  periodSeconds: {{ $v.readinessProbe.periodSeconds }}
  timeoutSeconds: {{ $v.readinessProbe.timeoutSeconds }}
  failureThreshold: {{ $v.readinessProbe.failureThreshold }}
{{- end }}
