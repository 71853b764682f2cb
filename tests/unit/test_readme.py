"""The README is a landing page: short, and every command of its "Try it" parses as shown."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from worker.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Placeholders the reader replaces with what an earlier command printed.
PLACEHOLDERS = {"TID": "hk0123456789abcdef", "BATCH": "b0123456789abcdef"}


def _try_it_commands() -> list[str]:
    section = README.split("## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    lines = [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("idv-worker ")]


def test_the_readme_is_a_landing_page() -> None:
    assert len(README.splitlines()) <= 250
    assert "## Try it" in README


def test_the_try_it_walks_through_doctor_flows_ledger_and_batches() -> None:
    groups = [shlex.split(c)[1] for c in _try_it_commands()]
    assert {"doctor", "flows", "ledger", "batch"} <= set(groups)
    assert "make up" in README
    assert "PATH" in README  # the second shell finds idv-worker in .venv


@pytest.mark.parametrize("command", _try_it_commands())
def test_each_try_it_command_parses(command: str) -> None:
    argv = [PLACEHOLDERS.get(word, word) for word in shlex.split(command)[1:]]
    args = build_parser().parse_args(argv)
    assert callable(args.handler)


def test_a_command_that_does_not_exist_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["ledger", "explain", "TID"])
