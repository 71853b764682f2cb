"""The emulator's README documents every fault, every flag and every control endpoint."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

from worker.emulator.cli import add_arguments
from worker.emulator.config import Faults

README = (Path(__file__).resolve().parents[3] / "worker" / "emulator" / "README.md").read_text()
ENDPOINTS = [
    "GET health",
    "POST transactions",
    "GET transactions[?callback_state=S]",
    "GET transactions/{tid}",
    "POST transactions/{tid}/complete",
    "GET/PUT clock",
    "GET/PUT faults",
    "GET/PUT quotas",
    "GET/PUT quota-algorithm",
    "GET stats",
    "GET calls",
    "GET calls/CheckResult/{tid}",
    "GET calls/DocOcrV2/{merchant_biz_id}",
    "POST reset",
    "GET flow/{tid}",
]


def test_every_fault_is_documented() -> None:
    assert [f.name for f in fields(Faults) if f"`{f.name}`" not in README] == []


def test_every_flag_is_documented() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    assert "--quota-algorithm" in flags
    assert [f for f in flags if f not in README and f != "--help"] == []


def test_every_control_endpoint_is_documented() -> None:
    assert [e for e in ENDPOINTS if f"| `{e}` |" not in README] == []
