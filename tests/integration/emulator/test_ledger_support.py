"""What the ledger and reconciler are tested against: lost callbacks, deletion at day 30 without
any request, and per-call counters that prove what was billed."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.emulator import EmulatorHandle, LoopbackHTTPServer
from tests.fixtures.servers import wait_until
from worker.emulator.samples import SampleRow, generate_samples

DAY = 86400.0


def control(emulator: EmulatorHandle, path: str) -> Any:
    response = emulator.http.get(f"{emulator.url}/_emulator/{path}")
    assert response.status_code == 200, response.text
    return response.json()


def complete_many(
    emulator: EmulatorHandle, hook: LoopbackHTTPServer, count: int, tag: str
) -> list[str]:
    tids = []
    for i in range(count):
        tid = emulator.create_transaction(
            "FACE_LIVENESS", callback_url=hook.url(f"/cb/{tag}"), callback_token=f"{tag}{i}"
        )
        emulator.complete(tid, video_size=0)
        tids.append(tid)
    return tids


def dropped_pattern(emulator: EmulatorHandle, tids: list[str]) -> list[bool]:
    return [emulator.transaction(t)["callback_state"] == "dropped" for t in tids]


def test_drop_callbacks_loses_a_seeded_share(
    emulator: EmulatorHandle, loopback_http: LoopbackHTTPServer
) -> None:
    emulator.set_faults(drop_callbacks=0.3, drop_callbacks_seed=5)
    first = complete_many(emulator, loopback_http, 30, "a")
    pattern = dropped_pattern(emulator, first)
    dropped = sum(pattern)
    assert 0 < dropped < 30
    wait_until(lambda: len(loopback_http.requests) == 30 - dropped)
    delivered = {r.split("transactionId=")[1].split("&")[0] for r in loopback_http.requests}
    assert delivered == set(first) - {t for t, d in zip(first, pattern, strict=True) if d}
    stats = emulator.stats()["callbacks"]
    assert (stats["dropped"], stats["scheduled"]) == (dropped, 30 - dropped)
    lost = {t for t, d in zip(first, pattern, strict=True) if d}
    listed = control(emulator, "transactions?callback_state=dropped")["transactions"]
    assert {t["transaction_id"] for t in listed} >= lost
    # Setting the same seed again replays the same sequence of decisions.
    emulator.set_faults(drop_callbacks_seed=5)
    again = complete_many(emulator, loopback_http, 30, "b")
    assert dropped_pattern(emulator, again) == pattern


def test_flows_can_complete_without_any_callback(
    emulator: EmulatorHandle, loopback_http: LoopbackHTTPServer
) -> None:
    quiet = emulator.create_transaction("eKYC", callback_url=loopback_http.url("/quiet"))
    emulator.complete(quiet, callback=False)
    emulator.set_faults(drop_callbacks=1)
    lost = emulator.create_transaction("eKYC", callback_url=loopback_http.url("/lost"))
    emulator.complete(lost)
    emulator.set_faults(drop_callbacks=0)
    heard = emulator.create_transaction("eKYC", callback_url=loopback_http.url("/heard"))
    emulator.complete(heard)
    wait_until(lambda: emulator.transaction(heard)["callback_state"] == "delivered")
    assert [r.split("?")[0] for r in loopback_http.requests] == ["/heard"]
    assert emulator.transaction(quiet)["callback_state"] == "suppressed"
    assert emulator.transaction(lost)["callback_state"] == "dropped"
    # Both results are there for whoever asks.
    for tid in (quiet, lost):
        response = emulator.call_api("CheckResult", {"MerchantBizId": "b", "TransactionId": tid})
        assert response.json()["Result"]["Passed"] == "Y"


def listed(emulator: EmulatorHandle) -> set[str]:
    return {t["transaction_id"] for t in control(emulator, "transactions")["transactions"]}


def test_advancing_the_clock_deletes_results_at_day_thirty(emulator: EmulatorHandle) -> None:
    emulator.reset(state=True)
    emulator.set_clock(speed=0)
    tid = emulator.create_transaction("eKYC")
    emulator.complete(tid, video_size=0, callback=False)
    emulator.advance(30 * DAY - 5)
    assert tid in listed(emulator)
    emulator.advance(10)
    # Neither the stats nor the listing look the transaction up: the clock change deleted it.
    assert tid not in listed(emulator)
    assert emulator.stats()["transactions"]["deleted"] == 1
    response = emulator.call_api("CheckResult", {"MerchantBizId": "b", "TransactionId": tid})
    assert (response.status_code, response.json()["Code"]) == (400, "TransactionIdInvalid")


def test_results_are_deleted_while_nobody_asks(emulator: EmulatorHandle) -> None:
    tid = emulator.create_transaction("eKYC")
    emulator.complete(tid, video_size=0, callback=False)
    emulator.advance(30 * DAY - 1)
    assert tid in listed(emulator)
    # One emulated second later, at real speed, the background sweep deletes it.
    wait_until(lambda: tid not in listed(emulator), timeout=10, interval=0.1)
    assert emulator.http.get(f"{emulator.url}/_emulator/transactions/{tid}").status_code == 404


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> SampleRow:
    return generate_samples(tmp_path_factory.mktemp("ledger"), 1, doc_type="00000006")[0]


def doc_ocr(emulator: EmulatorHandle, sample: SampleRow, biz: str) -> httpx.Response:
    query = {
        "ProductCode": "ID_OCR_MIN",
        "MerchantBizId": biz,
        "MerchantUserId": "u1",
        "DocType": sample.doc_type,
        "Ocr": "T",
    }
    body = {"IdOcrPictureBase64": base64.b64encode(Path(sample.image).read_bytes()).decode()}
    return emulator.call_api("DocOcrV2", query, body)


def test_call_counters_prove_what_was_billed(emulator: EmulatorHandle, picture: SampleRow) -> None:
    emulator.reset(stats=True)
    tid = emulator.create_transaction("eKYC")
    query = {"MerchantBizId": "b", "TransactionId": tid}
    assert emulator.call_api("CheckResult", query).status_code == 404  # not completed yet
    emulator.complete(tid, callback=False)
    assert emulator.call_api("CheckResult", query).status_code == 200
    assert emulator.call_api("CheckResult", {**query, "IsReturnImage": "N"}).status_code == 200
    assert emulator.call_api("CheckResult", {**query, "IsReturnImage": "Y"}).status_code == 200
    assert control(emulator, f"calls/CheckResult/{tid}") == {
        "Y": {"calls": 1, "success": 1, "throttled": 0, "errors": 0},
        "N": {"calls": 3, "success": 2, "throttled": 0, "errors": 1},
    }

    # A bucket of two calls that refills once every 1000 s: the third call is throttled.
    emulator.set_quotas({"ID_OCR_MIN:DocOcrV2": 0.001})
    put = emulator.http.put(
        f"{emulator.url}/_emulator/quota-algorithm", json={"algorithm": "token-bucket", "burst": 2}
    )
    assert put.status_code == 200
    assert doc_ocr(emulator, picture, "once1").status_code == 200
    assert doc_ocr(emulator, picture, "twice1").status_code == 200
    assert doc_ocr(emulator, picture, "twice1").status_code == 403
    # A signature failure never reaches the provider's counters.
    wrong = emulator.call_api(
        "DocOcrV2", {"MerchantBizId": "once1"}, {}, access_key_secret="wrong-secret"
    )
    assert wrong.status_code == 400
    calls = control(emulator, "calls")["DocOcrV2"]
    assert calls["once1"] == {"calls": 1, "success": 1, "throttled": 0, "errors": 0}
    assert calls["twice1"] == {"calls": 2, "success": 1, "throttled": 1, "errors": 0}
    assert control(emulator, "calls/DocOcrV2/never1")["calls"] == 0
    emulator.reset(stats=True)
    assert control(emulator, "calls") == {"CheckResult": {}, "DocOcrV2": {}, "MerchantUserId": {}}
