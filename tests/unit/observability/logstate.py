"""Logging is process-wide: a fixture that gives it back to each test as it found it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from worker.observability.logs import PINNED_LEVELS


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    names = ["", "idv", "celery", "celery.task", "celery.redirected", *PINNED_LEVELS]
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in names
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate = propagate
