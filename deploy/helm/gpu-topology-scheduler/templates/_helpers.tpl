{{- define "gts.labels" -}}
app.kubernetes.io/part-of: gpu-topology-scheduler
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "gts.tlsSecret" -}}
{{- default (printf "%s-extender-tls" .Release.Name) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "gts.signingSecret" -}}
{{- default (printf "%s-signing-key" .Release.Name) .Values.signingKey.existingSecret -}}
{{- end -}}

{{- define "gts.extenderHost" -}}
{{- printf "%s-extender.%s.svc" .Release.Name .Release.Namespace -}}
{{- end -}}

{{- define "gts.checkTimeouts" -}}
{{- $need := add .Values.extender.gangTimeout .Values.extender.gangBindGrace 5 -}}
{{- if le (int .Values.extender.httpTimeoutSeconds) (int $need) -}}
{{- fail (printf "extender.httpTimeoutSeconds=%v must exceed gangTimeout + gangBindGrace + 5 = %v" .Values.extender.httpTimeoutSeconds $need) -}}
{{- end -}}
{{- end -}}

{{- define "gts.nodeAgentEnv" -}}
- name: NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- {name: NVIDIA_VISIBLE_DEVICES, value: all}
- {name: NVIDIA_DRIVER_CAPABILITIES, value: utility}
- {name: PYTHONDONTWRITEBYTECODE, value: "1"}
{{- end -}}

{{- define "gts.nodeAgentSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: ["ALL"]}
{{- end -}}
