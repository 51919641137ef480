{{- define "topicbridge.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "topicbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "topicbridge.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "topicbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "topicbridge.selector" -}}
app.kubernetes.io/name: {{ include "topicbridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "topicbridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "topicbridge.secretName" -}}
{{- default (printf "%s-auth" (include "topicbridge.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* The engine runs as its own StatefulSet only for the lite backend. */}}
{{- define "topicbridge.remoteEngine" -}}
{{- if and (eq .Values.backend "lite") .Values.engine.enabled -}}true{{- end -}}
{{- end -}}

{{/* Refuse values that would deploy something broken, with the reason. */}}
{{- define "topicbridge.validate" -}}
{{- if not (has .Values.backend (list "lite" "kafka" "rocketmq")) -}}
{{- fail (printf "backend must be lite, kafka or rocketmq, not %q" .Values.backend) -}}
{{- end -}}
{{- if and (eq .Values.backend "lite") (not .Values.engine.enabled) (gt (int .Values.gateway.replicas) 1) -}}
{{- fail "backend lite with engine.enabled=false embeds the engine in the gateway: each replica would have its own, so gateway.replicas must be 1 (or enable the engine)" -}}
{{- end -}}
{{- range $token := splitList "," (.Values.auth.bearerTokens | toString) -}}
{{- if and (trim $token) (lt (len (trim $token)) 16) -}}
{{- fail "auth.bearerTokens: each token needs at least 16 characters (the gateway refuses shorter ones)" -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.auth.existingSecret) (not .Values.auth.bearerTokens) (not (dig "gateway" "oauth" "issuer" "" .Values.config)) -}}
{{- fail "the gateway refuses to listen beyond loopback without authentication: set auth.existingSecret, auth.bearerTokens or config.gateway.oauth.issuer" -}}
{{- end -}}
{{- end -}}
