"""A local stand-in for Alibaba Cloud ID Verification international (cloudauth-intl 2022-08-09).

Same wire protocol as the provider (signatures, parameters, errors, quotas, callbacks, expiring
evidence links, retention), plus a control API under ``/_emulator/`` for tests and demos.
Only tests, demos and benchmarks use it; nothing in the production path imports it.
"""

from __future__ import annotations

from typing import Any

from worker.emulator.config import EmulatorConfig, Faults

__all__ = ["EmulatorConfig", "Faults", "generate_samples"]


def __getattr__(name: str) -> Any:
    # Pillow is only loaded when samples are wanted, not by every ``idv-worker`` command.
    if name == "generate_samples":
        from worker.emulator.samples import generate_samples

        return generate_samples
    raise AttributeError(name)
