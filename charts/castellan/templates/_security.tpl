{{/* Security settings of the operator container (docs/security.md): env, mounts and volumes. */}}
{{- define "castellan.securityEnv" -}}
{{- $s := .Values.security -}}
{{- with $s.natsAuth }}
{{- if eq .method "creds" }}
- name: CASTELLAN_NATS_CREDS
  value: /etc/castellan/nats-auth/user.creds
{{- else if eq .method "nkeySeed" }}
- name: CASTELLAN_NATS_NKEY_SEED
  value: /etc/castellan/nats-auth/nkey.seed
{{- else if eq .method "token" }}
- name: CASTELLAN_NATS_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .secretName | quote }}, key: token}
{{- else if eq .method "userPassword" }}
- name: CASTELLAN_NATS_USER
  value: {{ .user | quote }}
- name: CASTELLAN_NATS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .secretName | quote }}, key: password}
{{- else if eq .method "serviceAccountToken" }}
- name: CASTELLAN_NATS_SA_TOKEN
  value: /var/run/secrets/castellan/token
{{- end }}
{{- end }}
{{- if $s.natsTls.secretName }}
- name: CASTELLAN_NATS_TLS_CA
  value: /etc/castellan/nats-tls/ca.crt
{{- if $s.natsTls.clientCert }}
- name: CASTELLAN_NATS_TLS_CERT
  value: /etc/castellan/nats-tls/tls.crt
- name: CASTELLAN_NATS_TLS_KEY
  value: /etc/castellan/nats-tls/tls.key
{{- end }}
{{- end }}
{{- with $s.allowedNatsUrls }}
- name: CASTELLAN_NATS_ALLOWED_URLS
  value: {{ join "," . | quote }}
{{- end }}
{{- if $s.authCallout.enabled }}
- name: CASTELLAN_AUTH_CALLOUT
  value: "true"
- name: CASTELLAN_AUTH_CALLOUT_ISSUER_SEED
  value: /etc/castellan/auth-callout/issuer.seed
{{- if $s.authCallout.operatorMode }}
- name: CASTELLAN_AUTH_CALLOUT_NATS_CREDS
  value: /etc/castellan/auth-callout/callout.creds
- name: CASTELLAN_AUTH_CALLOUT_OPERATOR_SIGNING_SEED
  value: /etc/castellan/auth-callout/operator-signing.seed
- name: CASTELLAN_AUTH_CALLOUT_SYSTEM_CREDS
  value: /etc/castellan/auth-callout/system.creds
- name: CASTELLAN_AUTH_CALLOUT_XKEY_SEED
  value: /etc/castellan/auth-callout/xkey.seed
{{- else }}
- name: CASTELLAN_AUTH_CALLOUT_NATS_USER
  value: {{ $s.authCallout.user | quote }}
- name: CASTELLAN_AUTH_CALLOUT_NATS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $s.authCallout.secretName | quote }}, key: password}
{{- end }}
- name: CASTELLAN_AUTH_CALLOUT_ADMINS
  value: {{ printf "system:serviceaccount:%s:%s" .Release.Namespace (include "castellan.serviceAccountName" .) | quote }}
{{- with $s.authCallout.accountPrefix }}
- name: CASTELLAN_AUTH_CALLOUT_ACCOUNT_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- with $s.authCallout.maxTtl }}
- name: CASTELLAN_AUTH_CALLOUT_MAX_TTL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "castellan.securityVolumeMounts" -}}
{{- $s := .Values.security -}}
{{- if and $s.natsAuth.secretName (has $s.natsAuth.method (list "creds" "nkeySeed")) }}
- name: nats-auth
  mountPath: /etc/castellan/nats-auth
  readOnly: true
{{- end }}
{{- if eq $s.natsAuth.method "serviceAccountToken" }}
- name: castellan-token
  mountPath: /var/run/secrets/castellan
  readOnly: true
{{- end }}
{{- if $s.natsTls.secretName }}
- name: nats-tls
  mountPath: /etc/castellan/nats-tls
  readOnly: true
{{- end }}
{{- if $s.authCallout.enabled }}
- name: auth-callout
  mountPath: /etc/castellan/auth-callout
  readOnly: true
{{- end }}
{{- end }}

{{- define "castellan.securityVolumes" -}}
{{- $s := .Values.security -}}
{{- if and $s.natsAuth.secretName (has $s.natsAuth.method (list "creds" "nkeySeed")) }}
- name: nats-auth
  secret:
    secretName: {{ $s.natsAuth.secretName | quote }}
    defaultMode: 0400
{{- end }}
{{- if eq $s.natsAuth.method "serviceAccountToken" }}
- name: castellan-token
  projected:
    sources:
      - serviceAccountToken:
          audience: castellan
          expirationSeconds: 3600
          path: token
{{- end }}
{{- if $s.natsTls.secretName }}
- name: nats-tls
  secret:
    secretName: {{ $s.natsTls.secretName | quote }}
    defaultMode: 0400
{{- end }}
{{- if $s.authCallout.enabled }}
- name: auth-callout
  secret:
    secretName: {{ $s.authCallout.secretName | quote }}
    defaultMode: 0400
    items:
      - {key: issuer.seed, path: issuer.seed}
{{- if $s.authCallout.operatorMode }}
      - {key: callout.creds, path: callout.creds}
      - {key: operator-signing.seed, path: operator-signing.seed}
      - {key: system.creds, path: system.creds}
      - {key: xkey.seed, path: xkey.seed}
{{- end }}
{{- end }}
{{- end }}
