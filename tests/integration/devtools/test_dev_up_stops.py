"""``idv-worker dev up`` never leaks: whatever ends it, every process it started goes.

A closed terminal (SIGHUP), SIGTERM, a Ctrl-C after the reader of its output went away
(``make up | tee log``), and SIGKILL of ``dev up`` itself (its children get SIGTERM from
Linux, and the reaper stops their process groups, pool processes included).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from tests.integration.devtools.test_dev_up import PROCESSES, _cli, _first_line, _gone
from worker.devtools import ROOT, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux"),
]

BASE = {k: v for k, v in os.environ.items() if not k.startswith("IDV_")}


def _start(tmp_path: Path, stderr: IO[str] | int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "worker", "dev", "up", "--json", "--dir", str(tmp_path / "s")],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=BASE, cwd=ROOT,
    )  # fmt: skip


def _ready(up: subprocess.Popen[str]) -> dict[str, Any]:
    """Read lines until the JSON object (progress lines come first when stderr shares stdout)."""
    assert up.stdout is not None
    while True:
        line = _first_line(up.stdout, timeout=180)
        assert line, "dev up ended before it was ready"
        if line.startswith("{"):
            doc: dict[str, Any] = json.loads(line)
            return doc


def _descendants(up: subprocess.Popen[str]) -> list[psutil.Process]:
    children = psutil.Process(up.pid).children(recursive=True)
    # the stack, the Celery pools and the reaper
    assert len(children) >= PROCESSES + 1
    return children


def _all_gone(children: list[psutil.Process]) -> None:
    wait_until(lambda: all(_gone(child.pid) for child in children), timeout=60)


def _stopped_lines(errors: Path) -> list[str]:
    return [ln for ln in errors.read_text().splitlines() if ln.startswith("stopped ")]


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_a_stop_signal_stops_everything(tmp_path: Path, sig: signal.Signals) -> None:
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        up = _start(tmp_path, err)
    try:
        doc = _ready(up)
        children = _descendants(up)
        if sig is signal.SIGTERM:  # a fresh stack passes its own health check at once
            doctor = _cli({**BASE, **doc["env"]}, "doctor", "--json")
            failed = [c for c in json.loads(doctor.stdout) if not c["ok"]]
            assert (doctor.returncode, failed) == (0, [])
        up.send_signal(sig)
        code = up.wait(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert code == 0, errors.read_text()
    assert f"{sig.name}: stopping the stack" in errors.read_text()
    assert len(_stopped_lines(errors)) == PROCESSES
    _all_gone(children)


def test_ctrl_c_after_the_reader_went_away_stops_everything(tmp_path: Path) -> None:
    # `make up 2>&1 | tee log`, then Ctrl-C: tee dies first, every later write fails.
    up = _start(tmp_path, subprocess.STDOUT)
    try:
        _ready(up)
        children = _descendants(up)
        assert up.stdout is not None
        up.stdout.close()
        up.send_signal(signal.SIGINT)
        code = up.wait(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert code == 0
    _all_gone(children)


def test_sigkill_of_dev_up_takes_every_child_along(tmp_path: Path) -> None:
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        up = _start(tmp_path, err)
    try:
        _ready(up)
        children = _descendants(up)
        pools = [c for c in children if c.ppid() != up.pid]  # Celery pool processes
        assert pools
        up.kill()
        up.wait(timeout=30)
    finally:
        if up.poll() is None:
            up.kill()
    assert _stopped_lines(errors) == []  # nothing was stopped by dev up itself
    _all_gone(children)
