"""Loki 3's default OTLP names, apart from the OTLP decoder (which loads protobuf), so
the server can list them (`/loki/api/v1/drilldown-limits`) without loading it."""

INDEX_ATTRIBUTES = frozenset({
    "service.name", "service.namespace", "service.instance.id", "deployment.environment",
    "cloud.region", "cloud.availability_zone", "k8s.cluster.name", "k8s.namespace.name",
    "k8s.pod.name", "k8s.container.name", "container.name", "k8s.replicaset.name",
    "k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name",
    "k8s.cronjob.name", "k8s.job.name",
})
# Loki's default `discover_service_name`: labels that may stand for a missing service.name,
# in order of preference; only the ones an indexed attribute can produce can match here.
SERVICE_NAME_SOURCES = ("service", "app", "application", "app_name", "name",
                        "app_kubernetes_io_name", "container", "container_name",
                        "k8s_container_name", "component", "workload", "job", "k8s_job_name")
