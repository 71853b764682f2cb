"""deploy/prometheus/alerts_test.yml: a unit test for every alert, run by promtool where it is
installed (``make test-alerts`` installs it from Debian's prometheus package)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.deploy.files import ALERTS, alerts

ALERT_TESTS = ALERTS.parent / "alerts_test.yml"
RULES: list[dict[str, Any]] = [rule for group in alerts()["groups"] for rule in group["rules"]]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")


def _cases() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERT_TESTS.read_text())
    assert document["rule_files"] == [ALERTS.name]
    return [case for test in document["tests"] for case in test["alert_rule_test"]]


def _promtool(*args: str | Path, cwd: Path = ALERTS.parent) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_every_alert_has_a_test_that_fires_it_and_one_that_does_not() -> None:
    names = {rule["alert"] for rule in RULES}
    fired = {case["alertname"] for case in _cases() if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in _cases() if not case.get("exp_alerts")}
    assert fired == names
    assert quiet == names
    for case in _cases():
        for alert in case.get("exp_alerts") or []:
            assert alert["exp_annotations"], case["alertname"]  # the text an operator reads


@needs_promtool
def test_promtool_accepts_every_rule() -> None:
    result = _promtool("check", "rules", ALERTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"SUCCESS: {len(RULES)} rules found", result.stdout)


@needs_promtool
def test_every_alert_test_passes() -> None:
    result = _promtool("test", "rules", ALERT_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_a_rule_that_misses_its_first_event_fails_its_test(tmp_path: Path) -> None:
    rules = ALERTS.read_text()
    broken = "increase(idv_batch_paused_total[15m])) > 1"
    assert rules.count("increase(idv_batch_paused_total[15m])) > 0") == 1
    (tmp_path / ALERTS.name).write_text(
        rules.replace("increase(idv_batch_paused_total[15m])) > 0", broken)
    )
    shutil.copy(ALERT_TESTS, tmp_path)
    result = _promtool("test", "rules", ALERT_TESTS.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: IdvBatchPaused" in result.stdout + result.stderr
