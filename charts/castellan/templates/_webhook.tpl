{{/* The sidecar-injection admission webhook (docs/webhook.md): names and the operator's settings. */}}

{{- define "castellan.webhookName" -}}
{{- printf "%s-webhook" (include "castellan.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "castellan.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "castellan.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* DNS names the API server dials the Service by (the serving certificate's subjectAltNames). */}}
{{- define "castellan.webhookDnsNames" -}}
{{- $svc := include "castellan.webhookName" . -}}
{{- $ns := .Release.Namespace -}}
{{- printf "%s,%s.%s,%s.%s.svc,%s.%s.svc.cluster.local" $svc $svc $ns $svc $ns $svc $ns -}}
{{- end -}}

{{/* Environment of the operator container for the webhook (included by deployment.yaml). */}}
{{- define "castellan.webhookEnv" -}}
{{- if .Values.webhook.enabled }}
- name: CASTELLAN_WEBHOOK_ENABLED
  value: "true"
- name: CASTELLAN_WEBHOOK_HOST
  value: "0.0.0.0"
- name: CASTELLAN_WEBHOOK_PORT
  value: {{ .Values.webhook.port | quote }}
- name: CASTELLAN_WEBHOOK_CERTIFICATES
  value: {{ .Values.webhook.certificates | quote }}
- name: CASTELLAN_WEBHOOK_SECRET
  value: {{ include "castellan.webhookSecretName" . | quote }}
- name: CASTELLAN_WEBHOOK_CONFIGURATION
  value: {{ include "castellan.webhookName" . | quote }}
- name: CASTELLAN_WEBHOOK_DNS_NAMES
  value: {{ include "castellan.webhookDnsNames" . | quote }}
- name: CASTELLAN_WEBHOOK_CA_VALIDITY
  value: {{ .Values.webhook.caValidity | quote }}
- name: CASTELLAN_WEBHOOK_CERT_VALIDITY
  value: {{ .Values.webhook.certValidity | quote }}
- name: CASTELLAN_WEBHOOK_ALLOW_NATS_OVERRIDE
  value: {{ .Values.webhook.allowNatsOverride | quote }}
- name: CASTELLAN_WEBHOOK_SIDECAR_RESOURCES
  value: {{ .Values.webhook.sidecarResources | toJson | quote }}
{{- end }}
{{- end -}}

{{/* The operator container's webhook port (included by deployment.yaml). */}}
{{- define "castellan.webhookPort" -}}
{{- if .Values.webhook.enabled }}
- name: webhook
  containerPort: {{ .Values.webhook.port }}
  protocol: TCP
{{- end }}
{{- end -}}

{{/* Where the API server sends admission reviews: the Service, or webhook.url for an operator outside the cluster. */}}
{{- define "castellan.webhookClientConfig" -}}
{{- if .Values.webhook.url }}
url: {{ printf "%s/mutate-pods" (trimSuffix "/" .Values.webhook.url) | quote }}
{{- else }}
service:
  name: {{ include "castellan.webhookName" . }}
  namespace: {{ .Release.Namespace }}
  path: /mutate-pods
  port: 443
{{- end }}
{{- end -}}

{{/* Namespaces whose pods are sent to the webhook: the watched ones (or all), never the release's own nor the excluded. */}}
{{- define "castellan.webhookNamespaceSelector" -}}
matchExpressions:
  {{- if .Values.watchNamespaces }}
  - key: kubernetes.io/metadata.name
    operator: In
    values: {{ toJson .Values.watchNamespaces }}
  {{- end }}
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ toJson (uniq (prepend .Values.webhook.excludeNamespaces .Release.Namespace)) }}
{{- end -}}
