"""Partitions between hosts lose nothing: each scenario of ``tests.hosts.scenarios`` while
batch rows and onboarding flows run (``make test-hosts``; see docs/operating/network-faults.md).

``IDV_HOSTS_ROWS`` / ``IDV_HOSTS_FLOWS`` size each scenario (default 400 rows, 20 flows: about
40 s of work at the quota of 10 per second).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.hosts import netns
from tests.hosts.scenarios import SCENARIOS, Outcome, Run, Scenario, throttle_budget
from tests.hosts.stack import HostStack
from worker.emulator.samples import generate_samples

QUOTA = 10.0
ROWS = int(os.environ.get("IDV_HOSTS_ROWS", "400"))
FLOWS = int(os.environ.get("IDV_HOSTS_FLOWS", "20"))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostStack]:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(reason)
    stack = HostStack(tmp_path_factory.mktemp("hosts"), QUOTA)
    try:
        yield stack.start()
    finally:
        stack.close()


@pytest.fixture(scope="module")
def images(hosts: HostStack) -> list[tuple[str, str]]:
    """Pictures the emulator reads as valid documents, with their DocType (under the folder
    of the manifests, where batch sources must be)."""
    rows = generate_samples(hosts.workdir / "images", 60, seed=11)
    return [(r.image, r.doc_type) for r in rows if r.card_side is None and r.expect == "ok"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_partition_loses_nothing(
    hosts: HostStack,
    images: list[tuple[str, str]],
    scenario: Scenario,
    outcomes: list[Outcome],
) -> None:
    outcome = Run(hosts, scenario, images, hosts.workdir, rows=ROWS, flows=FLOWS).run()
    outcomes.append(outcome)
    assert outcome.failures() == []


@pytest.mark.timeout(60)
def test_throttles_within_budget(hosts: HostStack, outcomes: list[Outcome]) -> None:
    """The limiter kept its margin: few calls arrived over the quota once it had learnt it
    (``THROTTLE_BUDGET`` over every scenario that ran, after each one's first seconds)."""
    if not outcomes:
        pytest.skip("no scenario ran")
    assert throttle_budget(outcomes) is None
