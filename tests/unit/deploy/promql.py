"""PromQL checks shared by the alert-rule and dashboard tests.

The metric catalogue is the registry the code emits through (``worker.observability.FAMILIES``),
turned into exposition sample names: ``<name>_total`` for counters, ``_bucket``/``_sum``/``_count``
for histograms. Expressions are parsed with a real PromQL parser.
"""

from __future__ import annotations

from dataclasses import dataclass

import promql_parser

from worker.observability import FAMILIES

# Labels Prometheus adds at scrape time, or that histograms carry.
TARGET_LABELS = frozenset({"instance", "pod", "job", "namespace"})


@dataclass(frozen=True)
class Family:
    name: str  # the family's name (a counter's without ``_total``)
    kind: str
    labels: frozenset[str]

    def series(self) -> dict[str, frozenset[str]]:
        """Sample names of this family with the labels each carries."""
        if self.kind == "histogram":
            return {
                f"{self.name}_bucket": self.labels | {"le"},
                f"{self.name}_sum": self.labels,
                f"{self.name}_count": self.labels,
            }
        if self.kind == "counter":
            return {f"{self.name}_total": self.labels}
        return {self.name: self.labels}


def catalogue() -> list[Family]:
    """Every registered family."""
    return [Family(f.name, f.kind, frozenset(f.labels)) for f in FAMILIES]


def known_series() -> dict[str, frozenset[str]]:
    series: dict[str, frozenset[str]] = {}
    for family in catalogue():
        series.update(family.series())
    return series


def check(expr: str, extra_labels: frozenset[str] = frozenset()) -> list[str]:
    """Problems with one expression: unparsable, unknown metrics, unknown labels."""
    try:
        tree = promql_parser.parse(expr)
    except ValueError as exc:
        return [f"does not parse: {exc}"]
    known = known_series()
    problems: list[str] = []
    selectors: list[promql_parser.VectorSelector] = []
    groupings: list[promql_parser.AggregateExpr] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            selectors.append(node)
        elif isinstance(node, promql_parser.AggregateExpr):
            groupings.append(node)

    promql_parser.walk(tree, visit)
    if not selectors:
        problems.append("selects no metric")
    used_labels: set[str] = set()
    for selector in selectors:
        if selector.name not in known:
            problems.append(f"unknown metric {selector.name!r}")
            continue
        labels = known[selector.name] | TARGET_LABELS
        used_labels |= labels
        for matcher in selector.matchers.matchers:
            if matcher.name not in labels:
                problems.append(f"{selector.name} has no label {matcher.name!r}")
    for aggregate in groupings:
        modifier = aggregate.modifier
        if modifier is not None and str(modifier.type).endswith("By"):
            for label in modifier.labels:
                if label not in used_labels | extra_labels:
                    problems.append(f"groups by {label!r}, which no selected metric has")
    return problems


# Functions whose result is wrong for a series that appears with a value above 0: its first
# sample is the only one, so the events it counts never show as an increase.
RANGE_FUNCTIONS = frozenset({"increase", "rate", "irate", "delta", "idelta", "resets"})


def _selected(tree: promql_parser.Expr) -> set[str]:
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)

    promql_parser.walk(tree, visit)
    return names


def selected(expr: str) -> set[str]:
    """Every metric (sample name) an expression selects."""
    return _selected(promql_parser.parse(expr))


def counted(expr: str) -> set[str]:
    """Metrics an expression reads through ``increase()``, ``rate()`` and their kin."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.Call) and node.func.name in RANGE_FUNCTIONS:
            for arg in node.args:
                names.update(_selected(arg))

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def family_of(sample: str) -> str:
    """The registered family a sample name belongs to (``idv_x_total`` -> ``idv_x``)."""
    for family in catalogue():
        if sample in family.series():
            return family.name
    raise KeyError(sample)
