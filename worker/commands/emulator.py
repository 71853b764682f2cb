"""``idv-worker emulator``: run the provider emulator, or write sample images (``samples``)."""

from __future__ import annotations

from typing import Any

from worker.emulator.cli import register as _register


def register(subparsers: Any) -> None:
    """Add the ``emulator`` command group."""
    _register(subparsers)
