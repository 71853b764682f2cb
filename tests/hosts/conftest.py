"""The hosts tier: left out of ``make test`` (it needs root and takes minutes).

Its tests run only when ``IDV_HOSTS_TIER=1`` (``make test-hosts`` sets it); without network
namespaces they skip with the reason. After the run the per-scenario table is printed.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.hosts.scenarios import LEARN_S, THROTTLE_BUDGET, table, throttle_budget
from tests.hosts.stack import LOSS

OUTCOMES_KEY = pytest.StashKey[list]()  # type: ignore[type-arg]


def pytest_configure(config: pytest.Config) -> None:
    config.stash[OUTCOMES_KEY] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("IDV_HOSTS_TIER") == "1":
        return
    skip = pytest.mark.skip(reason="the hosts tier runs with `make test-hosts` (root, minutes)")
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def outcomes(pytestconfig: pytest.Config) -> list:  # type: ignore[type-arg]
    """Where each scenario leaves its ``Outcome`` for the table."""
    return pytestconfig.stash[OUTCOMES_KEY]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    found = config.stash.get(OUTCOMES_KEY, [])
    if not found:
        return
    terminalreporter.section("hosts tier: partitions")
    budget = f"{THROTTLE_BUDGET * 1000:g} per 1,000 calls after each scenario's first {LEARN_S:g} s"
    terminalreporter.write_line(
        f"links 10 ± 5 ms each way, loss {LOSS:g} (a lost chunk is held one 200 ms RTO); "
        "max/1s: most DocOcrV2 or CheckResult calls the emulator served in one sliding second; "
        f"throttled: arrivals over the quota (budget: {budget})"
    )
    terminalreporter.write_line(table(found))
    terminalreporter.write_line(throttle_budget(found) or "throttles within the budget")
    for outcome in found:
        detail = {"statuses": outcome.statuses, "flow_states": outcome.flow_states,
                  "max_in_window": outcome.max_in_window, "throttled": outcome.throttled,
                  "widened": outcome.widened,
                  "processes_died": outcome.died}  # fmt: skip
        terminalreporter.write_line(f"{outcome.scenario}: {json.dumps(detail)}")
