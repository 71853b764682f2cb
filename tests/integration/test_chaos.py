"""A reduced chaos run inside the suite: nothing lost, nothing billed twice, no node left dead.

``bench/chaos.py --quick`` with fewer rows and flows and the fault schedule at 0.35 of its
pace (every fault still happens, each for a shorter time): real workers SIGKILLed every 10–20 s,
provider errors, a quota cut, slow replies, broken downloads, the S3 API refusing connections
and a Redis crash (AOF). Its figures are printed; here only what must hold is asserted (the
wall time against the quota-limited ideal is a figure, shown by ``make chaos``, not a test).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]


def test_reduced_chaos_run_loses_nothing() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "bench/chaos.py",
            "--quick",
            "--rows",
            "120",
            "--flows",
            "10",
            "--pace",
            "0.35",
        ],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no figures\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    figures = json.loads(lines[-1])
    print(json.dumps(figures, indent=2))
    assert figures["settled"], figures
    assert figures["items_lost"] == 0, figures
    assert figures["flows_lost"] == 0, figures
    assert figures["duplicate_billed_calls"] == 0, figures
    assert figures["evidence_lost"] == 0, figures
    # The run's own event log says when a node exited on its own, among the faults.
    assert figures["worker_restarts_needed"] == 0, run.stdout[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
