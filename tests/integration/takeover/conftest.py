"""The takeover tests' rig: the production batch objects with a hooked network below the
client (``Hooked``), so a test can act as a heartbeat would in the middle of a chunk."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fixtures.batch import Hooked, Rig, build_rig
from tests.fixtures.emulator import EmulatorHandle


@pytest.fixture
def hooked() -> Hooked:
    return Hooked()


@pytest.fixture
def rig(
    redis_url: str, s3_endpoint: str, emulator: EmulatorHandle, hooked: Hooked
) -> Iterator[Rig]:
    yield from build_rig(redis_url, s3_endpoint, emulator, transport=hooked)
