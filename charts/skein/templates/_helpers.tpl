{{/* Labels of everything Skein installs (kubectl get all -A -l app.kubernetes.io/part-of=skein). */}}
{{- define "skein.partOf" -}}
app.kubernetes.io/part-of: skein
{{- end }}

{{/* The controller's selector; its objects carry it beside partOf. */}}
{{- define "skein.controllerSelector" -}}
app.kubernetes.io/name: skein-controller
{{- end }}

{{- define "skein.controllerLabels" -}}
{{ include "skein.controllerSelector" . }}
{{ include "skein.partOf" . }}
{{- end }}

{{/* A PEM value that must be given: the chart makes no trust of its own. */}}
{{- define "skein.requiredPEM" -}}
{{- $value := index . 0 -}}
{{- $name := index . 1 -}}
{{- required (printf "%s is required (PEM): skein install computes it; with Helm give it with --set-file, or the values of `skein install --print-values` (docs/install.md)" $name) $value -}}
{{- end }}

{{/* The controller's gRPC address inside the cluster, what injected proxies dial. */}}
{{- define "skein.controllerAddr" -}}
skein-controller.{{ .Release.Namespace }}.svc.cluster.local:8086
{{- end }}
