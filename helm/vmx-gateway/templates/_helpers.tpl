{{/* The release's objects are named <release>-<part>, within the 63 characters of a label. */}}
{{- define "vmx.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "vmx.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "dataplane") */}}
{{- define "vmx.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "vmx.image" -}}
{{- $registry := .ctx.Values.image.registry -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" $registry .image.repository .image.tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository .image.tag -}}
{{- end -}}
{{- end -}}

{{/* the Secret the chart creates for whatever has no existingSecret */}}
{{- define "vmx.secretName" -}}
{{- printf "%s-secrets" (include "vmx.fullname" .) -}}
{{- end -}}

{{/* the Secret holding one entry of .Values.secrets: (dict "ctx" $ "secret" .Values.secrets.x) */}}
{{- define "vmx.secretRef" -}}
{{- default (include "vmx.secretName" .ctx) .secret.existingSecret -}}
{{- end -}}

{{/*
The password of PostgreSQL, and of Redis: the chart makes one for a bundled server; an external
one's comes from an existing Secret.
*/}}
{{- define "vmx.postgresSecret" -}}
{{- if .Values.postgresql.existingSecret -}}
{{- .Values.postgresql.existingSecret -}}
{{- else if .Values.postgresql.bundled -}}
{{- include "vmx.secretName" . -}}
{{- else -}}
{{- fail "postgresql.existingSecret is required when postgresql.bundled is false" -}}
{{- end -}}
{{- end -}}

{{- define "vmx.postgresPasswordKey" -}}
{{- ternary .Values.postgresql.passwordKey "postgresql.password" (ne .Values.postgresql.existingSecret "") -}}
{{- end -}}

{{- define "vmx.redisSecret" -}}
{{- if .Values.redis.existingSecret -}}
{{- .Values.redis.existingSecret -}}
{{- else if .Values.redis.bundled -}}
{{- include "vmx.secretName" . -}}
{{- else -}}
{{- fail "redis.existingSecret is required when redis.bundled is false" -}}
{{- end -}}
{{- end -}}

{{- define "vmx.redisPasswordKey" -}}
{{- ternary .Values.redis.passwordKey "redis.password" (ne .Values.redis.existingSecret "") -}}
{{- end -}}

{{- define "vmx.postgresHost" -}}
{{- if .Values.postgresql.bundled -}}
{{- printf "%s-postgresql" (include "vmx.fullname" .) -}}
{{- else -}}
{{- required "postgresql.host is required when postgresql.bundled is false" .Values.postgresql.host -}}
{{- end -}}
{{- end -}}

{{- define "vmx.redisHost" -}}
{{- if .Values.redis.bundled -}}
{{- printf "%s-redis" (include "vmx.fullname" .) -}}
{{- else -}}
{{- required "redis.host is required when redis.bundled is false" .Values.redis.host -}}
{{- end -}}
{{- end -}}

{{/* the pod security of every VM-X container: no root, nothing to escalate to */}}
{{- define "vmx.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "vmx.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
