"""deploy/k8s: valid objects for the Kubernetes API, and the properties production relies on."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from tests.unit.deploy.files import (
    Doc,
    deployments,
    k8s_documents,
    k8s_files,
    kustomization,
    project_version,
    workloads,
)
from worker.queues import ALL_QUEUES

# The oldest and the newest Kubernetes minor versions the manifests are checked against.
VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
SECRET = "idv-worker-secrets"
DOCS = k8s_documents()


def _id(item: tuple[str, Doc]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("item", DOCS, ids=[_id(d) for d in DOCS])
def test_object_matches_the_kubernetes_schema(item: tuple[str, Doc], version: str) -> None:
    # Strict: an unknown or misspelt field is an error, not silently dropped.
    kubernetes_validate.validate(item[1], version, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    assert sorted(kustomization()["resources"]) == sorted(p.name for p in k8s_files())


def test_objects_have_unique_names() -> None:
    keys = [(doc["kind"], doc["metadata"]["name"]) for _, doc in DOCS]
    assert len(keys) == len(set(keys))


SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|DSN|REDIS_URL|BROKER_URL")


def test_no_secret_is_written_in_the_manifests() -> None:
    # Secrets live in a Secret created by the operator (see config.yaml), never in these files.
    assert [doc for _, doc in DOCS if doc["kind"] == "Secret"] == []
    for _, doc in DOCS:
        if doc["kind"] == "ConfigMap":
            assert [k for k in doc["data"] if SECRET_NAME.search(k)] == []


def _containers(spec: Doc) -> list[Doc]:
    containers: list[Doc] = [*spec.get("initContainers", []), *spec["containers"]]
    return containers


WORKLOADS = workloads()
IDS = [w[0] for w in WORKLOADS]


@pytest.mark.parametrize(("name", "doc", "spec"), WORKLOADS, ids=IDS)
def test_pods_run_as_an_unprivileged_numeric_user(name: str, doc: Doc, spec: Doc) -> None:
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == 10001
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in _containers(spec):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        # A read-only root needs a writable /tmp (tempfiles, spooled uploads).
        assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])


@pytest.mark.parametrize(("name", "doc", "spec"), WORKLOADS, ids=IDS)
def test_images_are_pinned_to_the_project_version(name: str, doc: Doc, spec: Doc) -> None:
    for container in _containers(spec):
        assert container["image"] == f"idv-worker:{project_version()}"


@pytest.mark.parametrize(("name", "doc", "spec"), WORKLOADS, ids=IDS)
def test_containers_have_requests_and_limits(name: str, doc: Doc, spec: Doc) -> None:
    for container in _containers(spec):
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}
        assert set(resources["limits"]) == {"cpu", "memory"}


@pytest.mark.parametrize(("name", "doc", "spec"), WORKLOADS, ids=IDS)
def test_secrets_come_from_the_secret_by_key(name: str, doc: Doc, spec: Doc) -> None:
    required = {
        "IDV_ACCESS_KEY_ID",
        "IDV_ACCESS_KEY_SECRET",
        "IDV_REDIS_URL",
        "IDV_CALLBACK_TOKENS",
        "IDV_SUBJECT_KEY",
    }
    for container in _containers(spec):
        for source in container.get("envFrom", []):
            assert "secretRef" not in source  # a missing key must stop the pod, not be skipped
        for env in container.get("env", []):
            assert "value" not in env or not SECRET_NAME.search(env["name"])
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == SECRET
                assert ref["key"] == env["name"]
                assert ref.get("optional", False) is (env["name"] not in required)


DEPLOYMENTS = deployments()
DEPLOYMENT_IDS = [d[0] for d in DEPLOYMENTS]


@pytest.mark.parametrize(("name", "doc", "spec"), DEPLOYMENTS, ids=DEPLOYMENT_IDS)
def test_long_running_containers_have_both_probes(name: str, doc: Doc, spec: Doc) -> None:
    for container in spec["containers"]:
        assert "readinessProbe" in container
        assert "livenessProbe" in container


@pytest.mark.parametrize(("name", "doc", "spec"), DEPLOYMENTS, ids=DEPLOYMENT_IDS)
def test_every_deployment_has_a_disruption_budget(name: str, doc: Doc, spec: Doc) -> None:
    labels = doc["spec"]["template"]["metadata"]["labels"]
    budgets = [
        d
        for _, d in DOCS
        if d["kind"] == "PodDisruptionBudget"
        and d["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(budgets) == 1
    # A budget that needs more pods than a single-replica Deployment has blocks every drain.
    if doc["spec"]["replicas"] == 1:
        assert budgets[0]["spec"].get("maxUnavailable", 0) >= 1


def _arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def _workers() -> dict[str, tuple[Doc, Doc]]:
    """Worker Deployments by the queues they consume."""
    found = {}
    for _, doc, spec in DEPLOYMENTS:
        args = spec["containers"][0]["args"]
        if args[:4] == ["celery", "-A", "worker.app", "worker"]:
            found[_arg_after(args, "-Q")] = (doc, spec)
    return found


def test_one_worker_deployment_per_lane() -> None:
    assert sorted(_workers()) == sorted(ALL_QUEUES)


@pytest.mark.parametrize("queue", ALL_QUEUES)
def test_workers_are_named_after_their_pod_and_probed_by_that_name(queue: str) -> None:
    _, spec = _workers()[queue]
    container = spec["containers"][0]
    args = container["args"]
    assert "-E" in args  # task events, for Flower / celery events
    node = _arg_after(args, "-n")
    lane = queue.removeprefix("idv.")
    assert node == f"{lane}@$(POD_NAME)"
    _assert_pod_name_from_downward_api(container)
    for probe in ("readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        # Exec probes are not expanded by Kubernetes: the shell reads $POD_NAME.
        assert command[:2] == ["sh", "-c"]
        assert f"--destination {lane}@$POD_NAME" in command[2]
        assert "--timeout" in command[2]
        assert container[probe]["timeoutSeconds"] > 10


def _assert_pod_name_from_downward_api(container: Doc) -> None:
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def _only(kind: str, component: str) -> tuple[Doc, Doc]:
    matches = [
        (doc, spec)
        for _, doc, spec in WORKLOADS
        if doc["kind"] == kind
        and doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(matches) == 1
    return matches[0]


def test_exactly_one_beat_pingable_by_its_pod_name() -> None:
    doc, spec = _only("Deployment", "beat")
    assert doc["spec"]["replicas"] == 1
    assert doc["spec"]["strategy"] == {"type": "Recreate"}
    container = spec["containers"][0]
    args = container["args"]
    assert args[:4] == ["celery", "-A", "worker.app", "beat"]
    assert "--enable-remote-control" in args
    assert _arg_after(args, "-n") == "beat@$(POD_NAME)"
    _assert_pod_name_from_downward_api(container)
    assert "--destination beat@$POD_NAME" in container["livenessProbe"]["exec"]["command"][2]
    schedule = _arg_after(args, "--schedule")
    assert any(schedule.startswith(m["mountPath"] + "/") for m in container["volumeMounts"])


def test_receiver_is_scraped_and_probed_over_http() -> None:
    doc, spec = _only("Deployment", "receiver")
    annotations: dict[str, Any] = doc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    container = spec["containers"][0]
    port = int(annotations["prometheus.io/port"])
    assert port in [p["containerPort"] for p in container["ports"]]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    # Scraped on the metrics port, never the public callback port the Service exposes.
    assert _arg_after(container["args"], "--metrics-port") == str(port)
    assert _arg_after(container["args"], "--port") != str(port)
    service = next(
        d for _, d in DOCS if d["kind"] == "Service" and d["metadata"]["name"] == "idv-receiver"
    )
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_bucket_job_runs_ensure_bucket() -> None:
    doc, spec = _only("Job", "s3-init")
    assert spec["containers"][0]["args"] == ["idv-worker", "s3", "ensure-bucket"]
    assert spec["restartPolicy"] in {"OnFailure", "Never"}
    assert doc["spec"]["ttlSecondsAfterFinished"] > 0
