"""PromQL checks shared by the alert-rule and dashboard tests.

The metric catalogue is the comment header of deploy/prometheus/alerts.yml: one line per family,
``idv_name{label,...}  kind  meaning``. Expressions are parsed with a real PromQL parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import promql_parser

from tests.unit.deploy.files import ALERTS

FAMILY_LINE = re.compile(r"^#\s+(?P<name>idv_\w+)(?:\{(?P<labels>[\w,]*)\})?\s+(?P<kind>\w+)\s")
# Labels Prometheus adds at scrape time, or that histograms carry.
TARGET_LABELS = frozenset({"instance", "pod", "job", "namespace"})


@dataclass(frozen=True)
class Family:
    name: str
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
        return {self.name: self.labels}


def catalogue() -> list[Family]:
    families = []
    for line in ALERTS.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = FAMILY_LINE.match(line)
        if match:
            labels = frozenset(filter(None, (match["labels"] or "").split(",")))
            families.append(Family(match["name"], match["kind"], labels))
    return families


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
