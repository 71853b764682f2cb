"""deploy/prometheus/alerts.yml: the rule file promtool accepts, over metrics that exist."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.deploy import promql
from tests.unit.deploy.files import alerts
from worker.observability import FAMILIES

# promtool's duration syntax (model.ParseDuration).
DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
SEVERITIES = {"critical", "warning", "info"}
ALERT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RULES: list[dict[str, Any]] = [rule for group in alerts()["groups"] for rule in group["rules"]]


def test_groups_are_well_formed() -> None:
    document = alerts()
    assert set(document) == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))  # promtool rejects repeated group names
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit", "labels"}
        assert group["rules"]


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in RULES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_rule_is_complete(rule: dict[str, Any]) -> None:
    assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
    assert ALERT_NAME.match(rule["alert"])
    assert rule["for"]
    assert DURATION.match(rule["for"])
    assert rule["labels"]["severity"] in SEVERITIES
    assert rule["annotations"]["summary"].strip()
    assert rule["annotations"]["description"].strip()
    for text in rule["annotations"].values():
        assert text.count("{{") == text.count("}}")


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_expression_parses_over_known_metrics(rule: dict[str, Any]) -> None:
    assert promql.check(rule["expr"]) == []


@pytest.mark.parametrize("rule", RULES, ids=[r["alert"] for r in RULES])
def test_annotations_use_only_labels_the_alert_keeps(rule: dict[str, Any]) -> None:
    used = set(re.findall(r"\$labels\.(\w+)", " ".join(rule["annotations"].values())))
    match = re.search(r"^\s*\w+ by \(([\w, ]+)\)", rule["expr"])
    if match:  # an outer `by` keeps exactly those labels
        assert used <= {label.strip() for label in match[1].split(",")}


def test_the_checker_catches_mistakes() -> None:
    assert promql.check("sum(rate(idv_task_total[5m])") != []  # unbalanced
    assert promql.check("rate(idv_no_such_metric_total[5m])") != []
    assert promql.check('rate(idv_tasks_total{lane="bulk"}[5m])') != []
    assert promql.check("sum by (lane) (rate(idv_tasks_total[5m]))") != []
    assert promql.check('sum by (flow) (rate(idv_tasks_total{outcome="ok"}[5m]))') == []


def test_the_catalogue_is_the_metric_registry() -> None:
    families = {f.name: f for f in promql.catalogue()}
    assert set(families) == {f.name for f in FAMILIES}
    assert len(families) >= 30
    assert families["idv_batch_paused"].series() == {"idv_batch_paused_total": {"reason"}}
    assert set(families["idv_task_seconds"].series()) == {
        "idv_task_seconds_bucket", "idv_task_seconds_sum", "idv_task_seconds_count",
    }  # fmt: skip
    assert families["idv_queue_length"].series() == {"idv_queue_length": {"queue"}}
    # nothing in the catalogue but what the registry holds (no hand-kept list of names)
    assert promql.check("rate(idv_limiter_granted_total[5m])") == [
        "unknown metric 'idv_limiter_granted_total'"
    ]
