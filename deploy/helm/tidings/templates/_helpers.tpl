{{- define "tidings.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tidings.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one plane: (dict "root" $ "component" "gateway") */}}
{{- define "tidings.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tidings.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tidings.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tidings.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* One env entry from an existing Secret: (dict "env" NAME "ref" {name,key}) */}}
{{- define "tidings.secretEnvVar" -}}
{{- if .ref.name }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .ref.name }}
      key: {{ required (printf "the Secret key for %s" .env) .ref.key }}
{{- end }}
{{- end -}}

{{/* Plain settings from a map, each name checked to be a Tidings setting. */}}
{{- define "tidings.envMap" -}}
{{- range $name, $value := . }}
{{- if not (hasPrefix "TIDINGS_" $name) }}
{{- fail (printf "env %s: only TIDINGS_* settings are set by this chart" $name) }}
{{- end }}
{{- if regexMatch "SECRET|PASSWORD|API_KEY|REDIS_URL" $name }}
{{- fail (printf "env %s is a secret: name its Secret in secrets or extraSecretEnv instead" $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* The environment both planes share: connections, tenants, secrets. */}}
{{- define "tidings.commonEnv" -}}
- name: TIDINGS_ENV
  value: {{ .Values.environment | quote }}
- name: TIDINGS_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: TIDINGS_LOG_FORMAT
  value: json
- name: TIDINGS_TEMPORAL_ADDRESS
  value: {{ required "temporal.address" .Values.temporal.address | quote }}
- name: TIDINGS_TEMPORAL_NAMESPACE
  value: {{ .Values.temporal.namespace | quote }}
- name: TIDINGS_TEMPORAL_TASK_QUEUE
  value: {{ .Values.temporal.taskQueue | quote }}
{{- with .Values.temporal.uiUrl }}
- name: TIDINGS_TEMPORAL_UI_URL
  value: {{ . | quote }}
{{- end }}
- name: TIDINGS_KAFKA_BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers" .Values.kafka.bootstrapServers | quote }}
- name: TIDINGS_KAFKA_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: TIDINGS_KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | int64 | quote }}
- name: TIDINGS_KAFKA_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | int64 | quote }}
- name: TIDINGS_KAFKA_RETENTION_MS
  value: {{ .Values.kafka.retentionMs | int64 | quote }}
- name: TIDINGS_TENANTS_MAX_CONCURRENT_RUNS
  value: {{ .Values.tenants.maxConcurrentRuns | int64 | quote }}
- name: TIDINGS_TENANTS_MAX_SOCKETS
  value: {{ .Values.tenants.maxSockets | int64 | quote }}
- name: TIDINGS_MODEL_PROVIDER
  value: {{ .Values.model.provider | quote }}
{{- with .Values.model.baseUrl }}
- name: TIDINGS_MODEL_BASE_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.model.name }}
- name: TIDINGS_MODEL_NAME
  value: {{ . | quote }}
{{- end }}
{{- with .Values.tracing.otlpEndpoint }}
- name: TIDINGS_TRACING_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: TIDINGS_TRACING_SAMPLE_RATIO
  value: {{ .Values.tracing.sampleRatio | quote }}
{{- include "tidings.secretEnvVar" (dict "env" "TIDINGS_TENANTS_API_KEYS" "ref" .Values.secrets.apiKeys) }}
{{- include "tidings.secretEnvVar" (dict "env" "TIDINGS_GATEWAY_TOKEN_SECRET" "ref" .Values.secrets.tokenSecret) }}
{{- include "tidings.secretEnvVar" (dict "env" "TIDINGS_GATEWAY_TOKEN_SECRETS_PREVIOUS" "ref" .Values.secrets.tokenSecretsPrevious) }}
{{- include "tidings.secretEnvVar" (dict "env" "TIDINGS_REDIS_URL" "ref" .Values.secrets.redisUrl) }}
{{- include "tidings.secretEnvVar" (dict "env" "TIDINGS_MODEL_API_KEY" "ref" .Values.secrets.modelApiKey) }}
{{- range .Values.extraSecretEnv }}
{{- if not (hasPrefix "TIDINGS_" .env) }}
{{- fail (printf "extraSecretEnv %s: only TIDINGS_* settings are set by this chart" .env) }}
{{- end }}
{{- include "tidings.secretEnvVar" (dict "env" .env "ref" .) }}
{{- end }}
{{- include "tidings.envMap" .Values.extraEnv }}
{{- end -}}

{{/* Volumes: a writable /tmp (the root filesystem is read-only) and, for
workers (dict "root" $ "pipelines" true), the pipelines ConfigMap when given. */}}
{{- define "tidings.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if and .pipelines .root.Values.pipelines.configMap }}
- name: pipelines
  configMap:
    name: {{ .root.Values.pipelines.configMap }}
{{- end }}
{{- with .root.Values.tlsFiles.secretName }}
- name: tls-files
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "tidings.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if and .pipelines .root.Values.pipelines.configMap }}
- name: pipelines
  mountPath: /etc/tidings/pipelines
  readOnly: true
{{- end }}
{{- if .root.Values.tlsFiles.secretName }}
- name: tls-files
  mountPath: {{ .root.Values.tlsFiles.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}
