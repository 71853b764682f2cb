"""``idv-worker quota status`` against a real Redis: read-only, text and JSON."""

from __future__ import annotations

import argparse
import json

import pytest
import redis

from tests.fixtures.servers import free_port
from tests.unit.ratelimit.sim import limiter_for
from worker.commands import quota
from worker.ratelimit import AdaptivePolicy, CallContext, Lane
from worker.settings import QuotaSettings, load_settings

# The share of a quota the default safety margin keeps.
KEEP = 1 - QuotaSettings.model_fields["quota_safety_margin"].default

# A fresh bucket restarts slowly (the ramp starts at AdaptivePolicy.restart).
RAMP = AdaptivePolicy().restart
# One throttle doubles the initial margin (MarginPolicy.widen); the rate factor stays.
WIDENED = 2 * QuotaSettings.model_fields["quota_safety_margin"].default


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="idv-worker")
    quota.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    handler = args.handler
    return int(handler(args))


def dump(client: redis.Redis) -> dict[bytes, object]:
    return {key: client.dump(key) for key in sorted(client.keys("*"))}


@pytest.fixture
def busy(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """Two buckets in use: one throttled with callers waiting in two lanes."""
    url = redis_client.connection_pool.connection_kwargs
    monkeypatch.setenv("IDV_REDIS_URL", f"redis://{url['host']}:{url['port']}/0")
    monkeypatch.setenv("IDV_QUOTAS", "ID_OCR_MIN=8")
    settings = load_settings()
    limiter = limiter_for(redis_client, settings)
    limiter.reserve("ID_OCR_MIN", "DocOcrV2", CallContext(Lane.BULK))
    limiter.reserve("ID_OCR_MIN", "DocOcrV2", CallContext(Lane.BULK))
    limiter.reserve("ID_OCR_MIN", "DocOcrV2", CallContext(Lane.REALTIME))
    limiter.feedback("ID_OCR_MIN", "DocOcrV2", throttled=True)
    limiter.reserve("eKYC", "CheckResult", CallContext(Lane.ARCHIVAL))
    return redis_client


def test_status_json_reports_each_bucket_without_changing_it(
    busy: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    before = dump(busy)
    assert run(["quota", "status", "--json"]) == 0
    assert dump(busy) == before
    doc = json.loads(capsys.readouterr().out)
    by_name = {row["bucket"]: row for row in doc["buckets"]}
    assert set(by_name) == {"ID_OCR_MIN:DocOcrV2", "eKYC:CheckResult"}
    ocr = by_name["ID_OCR_MIN:DocOcrV2"]
    assert ocr["configured_rate"] == 8
    assert RAMP <= ocr["factor"] < RAMP + 0.05  # ramping up since the first call
    assert ocr["margin"] == pytest.approx(WIDENED, abs=1e-4)
    assert ocr["rate_factor"] == pytest.approx((1 - WIDENED) * ocr["factor"], rel=1e-6)
    assert ocr["effective_rate"] == pytest.approx(8 * ocr["rate_factor"], rel=1e-6)
    assert (ocr["margin_floor"], ocr["margin_ceiling"]) == (0.002, 0.10)
    assert ocr["widened"] == 1
    assert ocr["waiting"] == {"realtime": 1, "archival": 0, "bulk": 1}
    assert ocr["last_throttled"] is not None
    assert ocr["throttled_total"] == 1
    ekyc = by_name["eKYC:CheckResult"]
    assert 0.9 <= ekyc["factor"] <= 1.0  # slow start of a fresh bucket, never a throttle
    assert ekyc["last_throttled"] is None
    assert ekyc["throttled_total"] == 0
    assert ekyc["waiting"] == {"realtime": 0, "archival": 0, "bulk": 0}


def test_status_table_and_filters(busy: redis.Redis, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["quota", "status", "--product", "ID_OCR_MIN"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "BUCKET", "QUOTA", "EFFECTIVE", "MARGIN", "FACTOR", "REALTIME", "ARCHIVAL", "BULK",
        "THROTTLED",
    ]  # fmt: skip
    assert len(out) == 2
    row = out[1].split()
    factor = float(row[4])
    assert RAMP <= factor < RAMP + 0.05
    # FACTOR is shown to 2 decimals: the effective rate may differ by 8 × (1 - margin) × 0.005
    assert float(row[2]) == pytest.approx(8 * (1 - WIDENED) * factor, abs=0.045)
    assert row[:4] == ["ID_OCR_MIN:DocOcrV2", "8", row[2], "3.00%"]
    assert row[5:8] == ["1", "0", "1"]
    assert "ago)" in out[1]


def test_status_of_a_bucket_never_used(
    redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDV_REDIS_URL", redis_url)
    code = run(["quota", "status", "--json", "--product", "eKYC_PRO", "--api", "Initialize"])
    assert code == 0
    [row] = json.loads(capsys.readouterr().out)["buckets"]
    assert row["configured_rate"] == 5
    assert row["stored_rate"] is None
    assert row["effective_rate"] == pytest.approx(5 * KEEP)


def test_unreachable_redis_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv("IDV_REDIS_URL", f"redis://:sekret@127.0.0.1:{port}/0")
    assert run(["quota", "status"]) == 1
    err = capsys.readouterr().err
    assert f"idv-worker quota status: Redis unreachable at redis://:***@127.0.0.1:{port}/0" in err
    assert "sekret" not in err
