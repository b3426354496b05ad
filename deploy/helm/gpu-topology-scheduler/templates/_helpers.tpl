{{- define "gts.labels" -}}
app.kubernetes.io/part-of: gpu-topology-scheduler
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "gts.image" -}}
{{- if not .Values.image.registry -}}
{{- fail "image.registry is empty: build and push the gts image (deploy/README.md, \"Build and push the image\") and install with --set image.registry=REGISTRY" -}}
{{- end -}}
{{- printf "%s/%s:%s" (trimSuffix "/" .Values.image.registry) .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* kube-scheduler's image: the API server's version unless pinned; a pin is checked against
     the version skew policy (same minor as kube-apiserver, or one below). */}}
{{- define "gts.kubeSchedulerImage" -}}
{{- $server := regexFind "^v?[0-9]+\\.[0-9]+\\.[0-9]+" .Capabilities.KubeVersion.Version -}}
{{- $tag := .Values.kubeScheduler.image.tag | default $server -}}
{{- $s := semver $tag -}}
{{- $k := semver $server -}}
{{- if not (and (eq $s.Major $k.Major) (or (eq $s.Minor $k.Minor) (eq (add1 $s.Minor) $k.Minor))) -}}
{{- fail (printf "kubeScheduler.image.tag=%s does not fit the API server %s: kube-scheduler must be the API server's minor version or one below (Kubernetes version skew policy); leave the tag empty to follow the API server" $tag .Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- printf "%s:%s" .Values.kubeScheduler.image.repository $tag -}}
{{- end -}}

{{- define "gts.tlsSecret" -}}
{{- default (printf "%s-extender-tls" .Release.Name) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "gts.clientTlsSecret" -}}
{{- default (printf "%s-kube-scheduler-tls" .Release.Name) .Values.tls.existingClientSecret -}}
{{- end -}}

{{- define "gts.signingSecret" -}}
{{- default (printf "%s-signing-keys" .Release.Name) .Values.signingKeys.existingSecret -}}
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
