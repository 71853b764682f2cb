"""deploy/grafana/idv-worker.json: a dashboard Grafana imports, over metrics that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.deploy import promql
from tests.unit.deploy.files import dashboard

DASHBOARD = dashboard()
PANELS: list[dict[str, Any]] = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
# Grafana's built-in variables, replaced by sample values before parsing.
BUILTINS = {"$__rate_interval": "5m", "$__range": "6h", "$__interval": "1m"}
VARIABLE = re.compile(r"\$(\w+)")
# What an operator opens this dashboard for, and a metric that must show it.
TOPICS = {
    "throughput per API against quota": "idv_limiter_wait_seconds_count",
    "limiter waits per lane": "idv_limiter_wait_seconds_bucket",
    "queue lengths": "idv_queue_length",
    "evidence latency": "idv_task_seconds_bucket",
    "ledger states": "idv_ledger_transactions",
    "archival forecast": "idv_archival_forecast_fits",
    "dead letters": "idv_dead_letters_total",
}


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in DASHBOARD["templating"]["list"]}


def _expand(expr: str) -> str:
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    samples = {"quota": "10", "bucket": "eKYC:CheckResult"}
    return VARIABLE.sub(lambda m: samples.get(m[1], m[0]), expr)


def _targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in PANELS for t in p["targets"]]


def test_dashboard_header() -> None:
    assert DASHBOARD["schemaVersion"] >= 36
    assert DASHBOARD["uid"] == "idv-worker"
    assert DASHBOARD["title"]
    assert "id" not in DASHBOARD or DASHBOARD["id"] is None  # importable into any Grafana


def test_panel_ids_are_unique() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0
        assert pos["w"] > 0
        assert pos["h"] > 0
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("panel", PANELS, ids=[p["title"] for p in PANELS])
def test_panel_queries_prometheus_through_the_datasource_variable(panel: dict[str, Any]) -> None:
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert panel["targets"]
    ref_ids = [t["refId"] for t in panel["targets"]]
    assert len(ref_ids) == len(set(ref_ids))
    for target in panel["targets"]:
        assert target["expr"].strip()


TARGETS = _targets()


@pytest.mark.parametrize(
    ("title", "target"), TARGETS, ids=[f"{t}/{x['refId']}" for t, x in TARGETS]
)
def test_expression_parses_over_known_metrics(title: str, target: dict[str, Any]) -> None:
    expr = target["expr"]
    for name in VARIABLE.findall(expr):
        assert f"${name}" in BUILTINS or name in _variables(), f"undefined variable ${name}"
    assert promql.check(_expand(expr)) == []


def test_datasource_variable_is_prometheus() -> None:
    variable = _variables()["datasource"]
    assert variable["type"] == "datasource"
    assert variable["query"] == "prometheus"


@pytest.mark.parametrize("topic", sorted(TOPICS))
def test_dashboard_shows(topic: str) -> None:
    metric = TOPICS[topic]
    assert any(re.search(rf"\b{metric}\b", t["expr"]) for _, t in TARGETS)
