{{/* The chart's name, and the objects' base name: the release's, or <release>-digitnet. */}}
{{- define "digitnet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "digitnet.fullname" -}}
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

{{/* The headless Service's name: the batch Job dials dns:///<this>:PORT. */}}
{{- define "digitnet.headless" -}}
{{- printf "%s-headless" (include "digitnet.fullname" . | trunc 54 | trimSuffix "-") }}
{{- end }}

{{- define "digitnet.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "digitnet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The server's pods: what its Services, PDB, NetworkPolicy and spread select. */}}
{{- define "digitnet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "digitnet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "digitnet.batchSelectorLabels" -}}
app.kubernetes.io/name: {{ include "digitnet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: batch
{{- end }}

{{- define "digitnet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "digitnet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "digitnet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The token's Secret: the existing one, or the one the chart makes. */}}
{{- define "digitnet.tokenSecret" -}}
{{- default (printf "%s-token" (include "digitnet.fullname" .)) .Values.token.existingSecret }}
{{- end }}

{{/* Where the TLS Secret is mounted, in the server's and the Job's pods. */}}
{{- define "digitnet.tlsDir" -}}/etc/digitnet/tls{{- end }}

{{/* The pod and container security settings, the same for the server and the Job: the image's user. */}}
{{- define "digitnet.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "digitnet.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* What both pods' containers need besides the image's environment: a writable HOME (onnxruntime keeps a cache
   under $HOME/.cache; the root filesystem is read-only, /tmp is an emptyDir) and no bytecode writes. */}}
{{- define "digitnet.commonEnv" -}}
- name: HOME
  value: /tmp
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end }}

{{- define "digitnet.tokenEnv" -}}
- name: DIGITNET_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "digitnet.tokenSecret" . }}
      key: {{ .Values.token.secretKey }}
{{- end }}

{{/* What the batch Job dials: every ready server pod, through the headless Service. */}}
{{- define "digitnet.server" -}}
dns:///{{ include "digitnet.headless" . }}:{{ .Values.server.grpcPort }}
{{- end }}

{{/* A client's environment (the batch Job's containers): the token, and with TLS the CA that signed the server's
   certificate (and the client's certificate, for mutual TLS), from the mounted Secret. */}}
{{- define "digitnet.clientEnv" -}}
{{ include "digitnet.commonEnv" . }}
{{- if .Values.token.enabled }}
{{ include "digitnet.tokenEnv" . }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: DIGITNET_TLS_CA
  value: {{ include "digitnet.tlsDir" . }}/ca.crt
{{- if .Values.tls.clientCA }}
- name: DIGITNET_TLS_CLIENT_CERT
  value: {{ include "digitnet.tlsDir" . }}/tls.crt
- name: DIGITNET_TLS_CLIENT_KEY
  value: {{ include "digitnet.tlsDir" . }}/tls.key
{{- end }}
{{- end }}
{{- end }}

{{/* A probe's handler: gRPC health without TLS; with TLS, HTTPS on the HTTP port, or a TCP connect to the gRPC port
   (mutual TLS, or HTTP off). $path is the HTTP route used with TLS. */}}
{{- define "digitnet.probeHandler" -}}
{{- $root := index . 0 }}
{{- $path := index . 1 }}
{{- $server := $root.Values.server }}
{{- if not $root.Values.tls.enabled }}
grpc:
  port: {{ $server.grpcPort }}
  service: ""
{{- else if and $server.httpPort (not $root.Values.tls.clientCA) }}
httpGet:
  path: {{ $path }}
  port: http
  scheme: HTTPS
{{- else }}
tcpSocket:
  port: grpc
{{- end }}
{{- end }}

{{/* Values that cannot be said in values.schema.json: fail the render with one line. */}}
{{- define "digitnet.validate" -}}
{{- if and .Values.token.enabled (not .Values.token.existingSecret) (not .Values.token.value) }}
{{- fail "token.enabled needs token.existingSecret (a Secret's name) or token.value" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName (a kubernetes.io/tls Secret: tls.crt, tls.key, ca.crt)" }}
{{- end }}
{{- if and .Values.tls.clientCA (not .Values.tls.enabled) }}
{{- fail "tls.clientCA needs tls.enabled: mutual TLS is TLS first" }}
{{- end }}
{{- if and .Values.models.existingClaim .Values.models.volume }}
{{- fail "models: give existingClaim or volume, not both" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.server.metricsPort) }}
{{- fail "serviceMonitor.enabled needs server.metricsPort" }}
{{- end }}
{{- if and .Values.batch.enabled (not (and .Values.batch.input.claimName .Values.batch.output.claimName)) }}
{{- fail "batch.enabled needs batch.input.claimName and batch.output.claimName" }}
{{- end }}
{{- if and .Values.batch.enabled (not .Values.headless.enabled) }}
{{- fail "batch.enabled needs headless.enabled: the Job dials the headless Service" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is over autoscaling.maxReplicas" }}
{{- end }}
{{- $ports := list .Values.server.grpcPort }}
{{- range $port := list .Values.server.httpPort .Values.server.metricsPort }}
{{- if $port }}
{{- if has $port $ports }}
{{- fail (printf "server: port %v is used twice (grpcPort, httpPort and metricsPort must differ)" $port) }}
{{- end }}
{{- $ports = append $ports $port }}
{{- end }}
{{- end }}
{{- end }}
