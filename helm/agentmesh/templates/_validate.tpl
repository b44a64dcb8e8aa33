{{- /*
Shapes that would deploy a platform that misbehaves quietly fail the render (helm install,
helm template, helm lint), each with what to set. Included by templates/configmap.yaml.
*/ -}}
{{- define "agentmesh.validate" -}}
{{- $live := int (include "agentmesh.maxReplicas" (list . "live")) }}
{{- $governance := int (include "agentmesh.maxReplicas" (list . "governance")) }}
{{- $hasNats := or .Values.nats.existingSecret (include "agentmesh.natsUrl" .) }}
{{- $hasRedis := or .Values.redis.existingSecret (include "agentmesh.redisUrl" .) }}
{{- if and (gt $live 1) (not $hasNats) }}
{{- fail (printf "unsafe: the live service may run %d replicas but no NATS is configured; each replica would see only the events published to it, so every WebSocket would miss events. Set nats.url or nats.existingSecret (or nats.bundled.enabled for a trial), or services.live.replicaCount: 1 without autoscaling" $live) }}
{{- end }}
{{- if and (gt $governance 1) (not $hasRedis) }}
{{- fail (printf "unsafe: the governance service may run %d replicas but no Redis is configured; rate-limit and budget counters would live in each pod, multiplying every limit by the replica count. Set redis.url or redis.existingSecret (or redis.bundled.enabled for a trial), or services.governance.replicaCount: 1 without autoscaling" $governance) }}
{{- end }}
{{- if .Values.database.sqlite }}
{{- if eq .Values.environment "production" }}
{{- fail "unsafe: database.sqlite with environment production; production refuses to start without a database URL. Use PostgreSQL (database.existingSecret or postgresql.bundled.enabled), or environment: development for a trial" }}
{{- end }}
{{- $many := list }}
{{- range $service := include "agentmesh.services" . | fromJsonArray }}
{{- if gt (int (include "agentmesh.maxReplicas" (list $ $service))) 1 }}
{{- $many = append $many $service }}
{{- end }}
{{- end }}
{{- $g := .Values.gateway }}
{{- if or (and $g.autoscaling.enabled (gt (int $g.autoscaling.maxReplicas) 1)) (and (not $g.autoscaling.enabled) (gt (int $g.replicaCount) 1)) }}
{{- $many = append $many "gateway" }}
{{- end }}
{{- if $many }}
{{- fail (printf "unsafe: database.sqlite with more than one replica of %s; each pod would have a SQLite file of its own, so replicas would disagree about every record. Use PostgreSQL (database.existingSecret or postgresql.bundled.enabled), or one replica of everything (defaults.replicaCount: 1, gateway.replicaCount: 1, no autoscaling)" (join ", " $many)) }}
{{- end }}
{{- end }}
{{- end }}
