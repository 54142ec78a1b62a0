{{/* Labels of every object; selectors use app.kubernetes.io/name only, as config/default. */}}
{{- define "binauthz.labels" -}}
app.kubernetes.io/name: binauthz
app.kubernetes.io/part-of: binauthz
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "binauthz.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
