"""Control API, business clock, evidence links, callbacks and fault injection over real HTTP."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
import pytest

from tests.fixtures.emulator import EmulatorHandle, LoopbackHTTPServer
from tests.fixtures.servers import wait_until

MINUTE = 60.0
DAY = 86400.0


def check_result(emulator: EmulatorHandle, tid: str) -> httpx.Response:
    return emulator.call_api("CheckResult", {"MerchantBizId": "b1", "TransactionId": tid})


def face_info(emulator: EmulatorHandle, tid: str) -> dict[str, Any]:
    response = check_result(emulator, tid)
    assert response.status_code == 200, response.text
    info: dict[str, Any] = json.loads(response.json()["Result"]["ExtFaceInfo"])
    return info


def test_clock_control(emulator: EmulatorHandle) -> None:
    start = emulator.now()
    assert abs(start - time.time()) < 5
    assert emulator.advance(DAY) >= start + DAY
    now = emulator.set_clock(offset=-3600)
    assert abs(now - (time.time() - 3600)) < 5
    frozen = emulator.set_clock(speed=0)
    assert emulator.now() == pytest.approx(frozen, abs=1e-6)
    bad = emulator.http.put(f"{emulator.url}/_emulator/clock", json={"warp": 1})
    assert bad.status_code == 400


def test_evidence_link_lifecycle(emulator: EmulatorHandle) -> None:
    tid = emulator.create_transaction("FACE_LIVENESS")
    done = emulator.complete(tid, video_size=300_000)
    emulator.set_clock(speed=0)
    link = face_info(emulator, tid)["docVideoUrl"]
    video = emulator.http.get(link)
    assert (video.status_code, video.headers["content-type"]) == (200, "video/webm")
    assert hashlib.sha256(video.content).hexdigest() == done["video_sha256"]
    expires = int(parse_qs(urlsplit(link).query)["Expires"][0])
    assert expires == int(emulator.now() + 15 * MINUTE)

    tampered = link.replace(f"Expires={expires}", f"Expires={expires + 600}")
    assert emulator.http.get(tampered).status_code == 403
    # 15 minutes later the link has expired, but CheckResult hands out a fresh one.
    emulator.advance(15 * MINUTE + 1)
    assert emulator.http.get(link).status_code == 403
    emulator.advance(10 * MINUTE)
    fresh = face_info(emulator, tid)["docVideoUrl"]
    assert emulator.http.get(fresh).status_code == 200
    # Past 30 minutes after completion the video is gone: no link, and live links 404.
    emulator.advance(5 * MINUTE)
    assert "docVideoUrl" not in face_info(emulator, tid)
    gone = emulator.http.get(fresh)
    assert gone.status_code == 404
    assert b"NoSuchKey" in gone.content
    stats = emulator.stats()["downloads"]
    assert (stats["completed"], stats["forbidden"], stats["not_found"]) == (2, 2, 1)


def test_results_are_deleted_after_thirty_days(emulator: EmulatorHandle) -> None:
    tid = emulator.create_transaction("eKYC")
    emulator.complete(tid, video_size=0)
    emulator.set_clock(speed=0)
    assert "docVideoUrl" not in face_info(emulator, tid)
    emulator.advance(30 * DAY - 10)
    assert check_result(emulator, tid).status_code == 200
    emulator.advance(20)
    response = check_result(emulator, tid)
    assert (response.status_code, response.json()["Code"]) == (400, "TransactionIdInvalid")
    assert emulator.http.get(f"{emulator.url}/_emulator/transactions/{tid}").status_code == 404


def download(emulator: EmulatorHandle, link: str) -> tuple[bytearray, bool]:
    """The bytes received, and whether the transfer was cut."""
    received = bytearray()
    try:
        with emulator.http.stream("GET", link) as response:
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                received.extend(chunk)
    except httpx.RemoteProtocolError:
        return received, True
    return received, False


def test_ranged_download_resumes_a_broken_transfer(emulator: EmulatorHandle) -> None:
    tid = emulator.create_transaction("FACE_LIVENESS")
    done = emulator.complete(tid, video_size=3 * 1024 * 1024 + 17)
    link = face_info(emulator, tid)["docVideoUrl"]
    emulator.set_faults(break_downloads=1, break_after_bytes=1_000_000)
    received, broken = download(emulator, link)
    assert broken
    assert len(received) == 1_000_000
    rest = emulator.http.get(link, headers={"Range": f"bytes={len(received)}-"})
    assert rest.status_code == 206
    assert (
        rest.headers["content-range"]
        == f"bytes 1000000-{done['video_size'] - 1}/{done['video_size']}"
    )
    received.extend(rest.content)
    assert hashlib.sha256(received).hexdigest() == done["video_sha256"]
    unsatisfiable = emulator.http.get(link, headers={"Range": f"bytes={done['video_size']}-"})
    assert unsatisfiable.status_code == 416
    stats = emulator.stats()["downloads"]
    assert (stats["broken"], stats["partial"]) == (1, 1)


def test_slow_downloads(emulator: EmulatorHandle) -> None:
    tid = emulator.create_transaction("FACE_LIVENESS")
    emulator.complete(tid, video_size=400_000)
    link = face_info(emulator, tid)["docVideoUrl"]
    emulator.set_faults(download_bytes_per_s=1_000_000)
    began = time.monotonic()
    assert len(emulator.http.get(link).content) == 400_000
    # A lower bound set by the configured rate, not a performance figure.
    assert time.monotonic() - began >= 0.35


def test_large_video_streams_in_bounded_memory(
    emulator: EmulatorHandle, emulator_server: Any
) -> None:
    tid = emulator.create_transaction("FACE_LIVENESS")
    size = 1024**3
    done = emulator.complete(tid, video_size=size)
    assert done["video_size"] == size
    link = face_info(emulator, tid)["docVideoUrl"]
    tail = emulator.http.get(link, headers={"Range": f"bytes={size - 1000}-"})
    assert (tail.status_code, len(tail.content)) == (206, 1000)
    process = psutil.Process(emulator_server.proc.pid)
    before = process.memory_info().rss
    streamed = 0
    with emulator.http.stream("GET", link, headers={"Range": f"bytes={size - 96 * 1024**2}-"}) as r:
        for chunk in r.iter_bytes():
            streamed += len(chunk)
    assert streamed == 96 * 1024**2
    assert process.memory_info().rss - before < 48 * 1024**2


def test_callbacks_are_asynchronous_retried_and_recorded(
    emulator: EmulatorHandle, loopback_http: LoopbackHTTPServer
) -> None:
    loopback_http.hold.add("/hook")
    loopback_http.statuses.extend([500, 502])
    tid = emulator.create_transaction(
        "eKYC", callback_url=loopback_http.url("/hook?tenant=t1"), callback_token="tok-1"
    )
    # The receiver holds every request until released: completing must not wait for it.
    emulator.complete(tid, passed="N", sub_code="205")
    wait_until(lambda: len(loopback_http.requests) == 1)
    loopback_http.release()
    wait_until(lambda: emulator.transaction(tid)["callback_state"] == "delivered")
    attempts = emulator.transaction(tid)["callbacks"]
    assert [a["status"] for a in attempts] == [500, 502, 200]
    assert attempts[-1]["at"] - attempts[0]["at"] < 3
    first = urlsplit(loopback_http.requests[0])
    assert first.path == "/hook"
    assert parse_qs(first.query) == {
        "tenant": ["t1"],
        "transactionId": [tid],
        "passed": ["N"],
        "subCode": ["205"],
        "callbackToken": ["tok-1"],
    }
    assert emulator.stats()["callbacks"] == {
        "scheduled": 1,
        "attempts": 3,
        "delivered": 1,
        "failed": 0,
        "dropped": 0,
    }


def test_callback_gives_up_after_two_retries(
    emulator: EmulatorHandle, loopback_http: LoopbackHTTPServer
) -> None:
    loopback_http.statuses.extend([503, 503, 503, 503])
    tid = emulator.create_transaction("FACE_LIVENESS", callback_url=loopback_http.url("/cb"))
    emulator.complete(tid)
    wait_until(lambda: emulator.transaction(tid)["callback_state"] == "failed")
    assert len(loopback_http.requests) == 3
    assert emulator.stats()["callbacks"]["failed"] == 1
    silent = emulator.create_transaction("FACE_LIVENESS", callback_url=loopback_http.url("/cb"))
    emulator.complete(silent, callback=False)
    assert emulator.transaction(silent)["callback_state"] == "suppressed"


def initialize(emulator: EmulatorHandle) -> httpx.Response:
    query = {"ProductCode": "eKYC", "MerchantBizId": "b1", "MerchantUserId": "u1"}
    return emulator.call_api("Initialize", query, {})


def test_error_faults(emulator: EmulatorHandle) -> None:
    emulator.set_faults(error_500_rate=1)
    response = initialize(emulator)
    assert (response.status_code, response.json()["Code"]) == (500, "InternalError")
    emulator.set_faults(error_500_rate=0, error_503_rate=1)
    response = initialize(emulator)
    assert (response.status_code, response.json()["Code"]) == (503, "ServiceUnavailable")
    emulator.set_faults(error_503_rate=0, non_json_rate=1)
    response = initialize(emulator)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    emulator.set_faults(non_json_rate=0, truncate_rate=1)
    response = initialize(emulator)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    emulator.set_faults(truncate_rate=0, drop_rate=1)
    with pytest.raises(httpx.RemoteProtocolError):
        initialize(emulator)
    stats = emulator.stats()["actions"]["Initialize"]["eKYC"]
    assert (stats["served"], stats["errors"]) == (5, 5)


def test_forbidden_latency_and_action_filter(emulator: EmulatorHandle) -> None:
    emulator.set_faults(forbidden_code="Forbidden.AccountAccessDenied")
    response = initialize(emulator)
    assert (response.status_code, response.json()["Code"]) == (403, "Forbidden.AccountAccessDenied")
    emulator.set_faults(forbidden_code=None, error_500_rate=1, actions=["CheckResult"])
    assert initialize(emulator).status_code == 200
    assert check_result(emulator, emulator.create_transaction()).status_code == 500
    emulator.set_faults(error_500_rate=0, actions=None, latency_ms=300)
    began = time.monotonic()
    assert initialize(emulator).status_code == 200
    assert time.monotonic() - began >= 0.3
    assert emulator.http.get(f"{emulator.url}/_emulator/faults").json()["latency_ms"] == 300


def test_control_api_errors_and_reset(emulator: EmulatorHandle) -> None:
    url = f"{emulator.url}/_emulator"
    assert (
        emulator.http.post(f"{url}/transactions", json={"product_code": "eKYC"}).status_code == 400
    )
    assert emulator.http.get(f"{url}/transactions/hk{'0' * 30}").status_code == 404
    assert emulator.http.put(f"{url}/faults", json={"drop_rate": 3}).status_code == 400
    assert emulator.http.put(f"{url}/quotas", json={"eKYC": -1}).status_code == 400
    assert emulator.http.get(f"{url}/nothing").status_code == 404
    tid = emulator.create_transaction()
    emulator.complete(tid, video_size=0)
    assert emulator.http.post(f"{url}/transactions/{tid}/complete", json={}).status_code == 409
    assert emulator.http.post(f"{url}/transactions/{tid}/complete", json={}).json()["error"]
    emulator.reset(stats=True, state=True)
    assert emulator.http.get(f"{url}/transactions/{tid}").status_code == 404
    assert emulator.stats()["transactions"] == {"count": 0, "completed": 0, "deleted": 0}
