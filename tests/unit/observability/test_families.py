"""Every metric the code emits is a registered family of the right type and labels."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from worker.observability import FAMILIES, Family
from worker.observability.store import metric_name

ROOT = Path(__file__).resolve().parents[3]
KINDS = {"incr": "counter", "observe": "histogram", "gauge": "gauge"}


def _emitted() -> Iterator[tuple[str, str, frozenset[str], str]]:
    """(name, kind, label names, where) of every ``.incr/.observe/.gauge`` call with a name
    known at the call site (a literal or a module-level constant)."""
    for path in [*ROOT.joinpath("worker").rglob("*.py"), *ROOT.joinpath("tasks").rglob("*.py")]:
        if "emulator" in path.parts or "observability" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        consts = {
            t.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for t in node.targets
            if isinstance(t, ast.Name) and isinstance(node.value.value, str)
        }
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            args = [call.func, *call.args]
            for i, fn in enumerate(args[:-1]):
                if isinstance(fn, ast.Attribute) and fn.attr in KINDS:
                    arg = args[i + 1]
                    name = (
                        arg.value
                        if isinstance(arg, ast.Constant)
                        else consts.get(arg.id)
                        if isinstance(arg, ast.Name)
                        else None
                    )
                    if isinstance(name, str):
                        labels = frozenset(k.arg for k in call.keywords if k.arg)
                        yield name, KINDS[fn.attr], labels, f"{path.name}:{call.lineno}"


EMITTED = sorted(set(_emitted()))


def test_the_scan_finds_the_metrics_of_every_flow() -> None:
    names = {metric_name(name) for name, *_ in EMITTED}
    assert {
        "idv_tasks", "idv_task_seconds", "idv_dead_letters", "idv_account_errors",
        "idv_onboarding", "idv_webhooks", "idv_callbacks", "idv_evidence",
        "idv_limiter_throttled", "idv_limiter_wait_seconds", "idv_limiter_rate_factor",
    } <= names  # fmt: skip


@pytest.mark.parametrize(("name", "kind", "labels", "where"), EMITTED)
def test_emitted_metric_is_registered(
    name: str, kind: str, labels: frozenset[str], where: str
) -> None:
    family = FAMILIES.get(metric_name(name))
    assert family is not None, f"{where}: {name} is not in worker/observability/families.py"
    assert family.kind == kind, where
    assert labels <= set(family.labels), where


def test_families_refuse_unsafe_definitions() -> None:
    with pytest.raises(ValueError, match="idv_ namespace"):
        Family("limiter_x", "counter", "x")
    with pytest.raises(ValueError, match="not allowed"):
        Family("idv_x", "counter", "x", ("transaction",))
    with pytest.raises(ValueError, match="already registered"):
        FAMILIES.register(Family("idv_tasks", "gauge", "other"))


def test_initial_series_are_the_product_of_known_values() -> None:
    family = Family("idv_x", "counter", "x", ("flow", "bucket"), {"flow": ("a", "b")})
    assert list(family.initial({})) == []
    assert list(family.initial({"bucket": ("P:Api",)})) == [
        {"flow": "a", "bucket": "P:Api"},
        {"flow": "b", "bucket": "P:Api"},
    ]
