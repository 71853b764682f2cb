"""Every metric an alert or a dashboard panel uses exists in a live scrape, and every counter
an alert or panel reads with ``increase()``/``rate()`` has its series at 0 from the start.

The scrape is what ``GET /metrics`` and ``idv-worker metrics`` serve (``MetricsExporter``) over a
real Redis; the expressions are those of deploy/prometheus/alerts.yml and
deploy/grafana/idv-worker.json, and the families those of the registry the code emits through.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.deploy import promql
from tests.unit.deploy.files import alerts, dashboard
from tests.unit.deploy.test_dashboard import _expand
from worker.observability import FAMILIES
from worker.queues import ALL_QUEUES
from worker.settings import Settings
from worker.wiring import Cli, blocks, build_exporter, services
from worker.wiring.receiver import known_buckets

Labels = frozenset[tuple[str, str]]


def _expressions() -> list[tuple[str, str]]:
    rules = [(r["alert"], r["expr"]) for g in alerts()["groups"] for r in g["rules"]]
    panels = [
        (f"panel {p['title']}", _expand(t["expr"]))
        for p in dashboard()["panels"]
        for t in p.get("targets", [])
    ]
    variables = [
        (f"variable {v['name']}", v["definition"].split("(", 1)[1].split(",")[0])
        for v in dashboard()["templating"]["list"]
        if v["type"] == "query"
    ]  # label_values(<metric>, <label>)
    return [*rules, *panels, *variables]


EXPRESSIONS = _expressions()
COUNTED = sorted({name for _, expr in EXPRESSIONS for name in promql.counted(expr)})


def _scrape(settings: Settings) -> dict[str, set[Labels]]:
    """Sample name -> label sets, as a Prometheus server would read the page."""
    exporter = build_exporter(settings)
    try:
        page = exporter.render()[0].decode()
    finally:
        exporter.close()
    samples: dict[str, set[Labels]] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).add(frozenset(sample.labels.items()))
    return samples


@pytest.fixture
def settings(s3_settings: Settings, redis_url: str) -> Settings:
    return s3_settings.replace(redis_url=redis_url)


@pytest.fixture
def cli(settings: Settings) -> Iterator[Cli]:
    with Cli(settings) as built:
        yield built


def test_the_expressions_read_counters_with_increase_and_rate() -> None:
    assert len(EXPRESSIONS) >= 40
    assert {"idv_batch_paused_total", "idv_archival_expired_total"} <= set(COUNTED)
    assert "idv_limiter_wait_seconds_count" in COUNTED  # provider calls on the dashboard


def test_every_metric_used_exists_in_a_live_scrape_once_its_writers_ran(
    cli: Cli, settings: Settings
) -> None:
    # The gauges that have no true value before their writer's first run (0 would be a false
    # reading): the reconcile sweep, the stale-upload sweep, the limiter's feedback.
    cli.reconciler().reconcile()
    services.build_upload_sweeper(cli.core, cli.objects).sweep()
    limiter = blocks.build_limiter(cli.core, cli.stack)
    limiter.feedback(settings.onboarding.onboarding_product, "CheckResult", throttled=True)
    scraped = _scrape(settings)
    missing = {
        f"{where}: {name}"
        for where, expr in EXPRESSIONS
        for name in promql.selected(expr)
        if name not in scraped
    }
    assert not missing


def test_what_a_fresh_store_lacks_is_only_gauges_waiting_for_their_writer(
    settings: Settings,
) -> None:
    scraped = _scrape(settings)
    absent = {
        promql.family_of(name)
        for _, expr in EXPRESSIONS
        for name in promql.selected(expr)
        if name not in scraped
    }
    for name in absent:
        family = FAMILIES.get(name)
        assert family is not None
        assert (family.kind, family.zero) == ("gauge", False), name


@pytest.mark.parametrize("sample", COUNTED)
def test_every_counter_read_with_increase_has_its_series_at_0_from_the_start(
    settings: Settings, sample: str
) -> None:
    family = FAMILIES.get(promql.family_of(sample))
    assert family is not None
    known = {"bucket": known_buckets(settings), "queue": ALL_QUEUES}
    for label in family.labels:  # every label's values are known before any event
        assert family.values.get(label) or known.get(label), f"{family.name}: {label} is open"
    expected = {frozenset(labels.items()) for labels in family.initial(known)}
    assert expected
    scraped = {
        frozenset((k, v) for k, v in labels if k != "le")  # a histogram's buckets
        for labels in _scrape(settings).get(sample, set())
    }
    assert expected <= scraped
