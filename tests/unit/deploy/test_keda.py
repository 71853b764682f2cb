"""deploy/k8s/keda: one KEDA ScaledObject per worker lane on ``idv_lane_desired_workers``,
and the worker pods' grace periods against the longest task.

No KEDA CRD schema is available offline, so the ScaledObjects get a structural check of the
fields KEDA's ``keda.sh/v1alpha1`` API defines (unknown or misspelt keys are errors, as with
``kubernetes_validate`` strict mode for the base manifests)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.deploy.files import K8S, Doc, deployments, k8s_documents
from worker.observability import FAMILIES
from worker.observability.demand import DEMAND_LANES, DESIRED_WORKERS
from worker.settings import load_settings
from worker.settings.observability import DEFAULT_CONCURRENCY

KEDA = K8S / "keda"
SPEC_KEYS = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "idleReplicaCount",
    "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip
PROMETHEUS_KEYS = {
    "serverAddress", "query", "threshold", "activationThreshold", "ignoreNullValues",
    "namespace", "unsafeSsl", "queryParameters", "customHeaders",
}  # fmt: skip
NUMBER = re.compile(r"^\d+(\.\d+)?$")


def _scaled_objects() -> list[Doc]:
    docs = [d for d in yaml.safe_load_all((KEDA / "scaledobjects.yaml").read_text()) if d]
    return docs


def _workers() -> dict[str, tuple[Doc, Doc]]:
    """Worker Deployments by lane (from ``-Q idv.<lane>``)."""
    found = {}
    for _, doc, spec in deployments():
        args = spec["containers"][0]["args"]
        if args[:4] == ["celery", "-A", "worker.app", "worker"]:
            found[args[args.index("-Q") + 1].removeprefix("idv.")] = (doc, spec)
    return found


def _by_lane() -> dict[str, Doc]:
    out = {}
    for doc in _scaled_objects():
        query = doc["spec"]["triggers"][0]["metadata"]["query"]
        match = re.fullmatch(rf'max\({DESIRED_WORKERS}\{{lane="(\w+)"\}}\)', query)
        assert match, query
        out[match.group(1)] = doc
    return out


def test_the_overlay_applies_the_base_and_the_scaled_objects() -> None:
    kustomization = yaml.safe_load((KEDA / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["..", "scaledobjects.yaml"]


def test_one_scaled_object_per_worker_lane_on_its_own_deployment() -> None:
    lanes = _by_lane()
    assert sorted(lanes) == sorted(_workers()) == sorted(DEMAND_LANES)
    names = {doc["metadata"]["name"] for _, doc in k8s_documents()}
    for lane, so in lanes.items():
        assert so["spec"]["scaleTargetRef"] == {"name": f"idv-worker-{lane}"}
        assert so["spec"]["scaleTargetRef"]["name"] in names


def test_the_gauge_they_scale_on_is_a_registered_family_with_these_lanes() -> None:
    family = FAMILIES.get(DESIRED_WORKERS)
    assert family is not None
    assert family.kind == "gauge"
    assert family.labels == ("lane",)
    assert family.values["lane"] == DEMAND_LANES


@pytest.mark.parametrize("doc", _scaled_objects(), ids=lambda d: d["metadata"]["name"])
def test_scaled_object_structure(doc: Doc) -> None:
    assert doc["apiVersion"] == "keda.sh/v1alpha1"
    assert doc["kind"] == "ScaledObject"
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    spec: dict[str, Any] = doc["spec"]
    assert set(spec) <= SPEC_KEYS, set(spec) - SPEC_KEYS
    low, high = spec["minReplicaCount"], spec["maxReplicaCount"]
    assert isinstance(low, int)
    assert isinstance(high, int)
    assert 0 <= low <= high
    assert 0 <= spec["fallback"]["replicas"] <= high
    assert spec["fallback"]["failureThreshold"] >= 1
    assert spec["pollingInterval"] > 0
    assert spec["cooldownPeriod"] >= 0
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert set(behavior) <= {"scaleUp", "scaleDown"}
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    # AverageValue with threshold 1: replicas = the gauge (already in pods).
    assert trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert set(meta) <= PROMETHEUS_KEYS, set(meta) - PROMETHEUS_KEYS
    assert meta["serverAddress"].startswith(("http://", "https://"))
    assert meta["threshold"] == "1"
    # KEDA reads every metadata value as a string.
    assert all(isinstance(v, str) for v in meta.values())
    assert NUMBER.match(meta["activationThreshold"])
    # A missing gauge is an error (KEDA then holds the fallback), not a silent zero.
    assert meta["ignoreNullValues"] == "false"


def test_a_scaled_object_refuses_its_near_misses() -> None:
    # The check above is only worth something if it fails on a typo or a wrong trigger.
    good = _scaled_objects()[0]
    for broken in (
        {**good, "spec": {**good["spec"], "minReplicas": 1}},
        {**good, "spec": {**good["spec"], "minReplicaCount": 30, "maxReplicaCount": 20}},
        {**good, "spec": {**good["spec"], "triggers": [{**good["spec"]["triggers"][0],
                                                       "type": "redis"}]}},
    ):  # fmt: skip
        with pytest.raises(AssertionError):
            test_scaled_object_structure(broken)


def _config_env() -> dict[str, str]:
    for _, doc in k8s_documents():
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "idv-worker-config":
            return {k: str(v) for k, v in doc["data"].items()}
    raise AssertionError("no idv-worker-config ConfigMap")


@pytest.mark.parametrize("lane", DEMAND_LANES)
def test_pods_have_the_concurrency_the_gauge_counts_in(lane: str) -> None:
    # idv_lane_desired_workers is in pods of IDV_WORKER_CONCURRENCY processes.
    _, spec = _workers()[lane]
    args = spec["containers"][0]["args"]
    configured = _config_env().get("IDV_WORKER_CONCURRENCY")
    concurrency = (
        load_settings(worker_concurrency=configured).observability.worker_concurrency
        if configured
        else DEFAULT_CONCURRENCY
    )
    assert int(args[args.index("--concurrency") + 1]) == concurrency[lane]


@pytest.mark.parametrize("lane", DEMAND_LANES)
def test_grace_period_covers_the_longest_task(lane: str) -> None:
    # Celery ends any task at IDV_TASK_TIME_LIMIT_S; a warm shutdown needs that at most, plus
    # time to stop. A chunk hands its rows back sooner (after its budget, or its current row).
    env = _config_env()
    limit = int(env.get("IDV_TASK_TIME_LIMIT_S", 0)) or load_settings().broker.task_time_limit_s
    budget = float(env.get("IDV_BATCH_CHUNK_BUDGET_S", 0)) or (
        load_settings().batch.batch_chunk_budget_s
    )
    _, spec = _workers()[lane]
    grace = spec["terminationGracePeriodSeconds"]
    assert grace >= limit + 30
    assert grace >= budget + 30
