"""Shared fixtures: real servers on loopback started by the session (see tests/fixtures/)."""

import os

import pytest

# Throwaway servers: processes the tests start warn about a Redis that would lose data
# instead of refusing it (tests of the refusal set IDV_MODE=production themselves).
os.environ.setdefault("IDV_MODE", "development")

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.s3",
    "tests.fixtures.emulator",
    "tests.fixtures.batch",
    "tests.fixtures.e2e",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules with ``slow`` tests first, each module's tests kept together and in order.

    ``make test`` hands whole modules to its test processes (``--dist loadscope``) in this
    order: the long end-to-end modules start at once instead of last, so that no process is
    left running one of them alone at the end.
    """
    slow: set[str] = {
        item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")
    }
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow)  # sort is stable
