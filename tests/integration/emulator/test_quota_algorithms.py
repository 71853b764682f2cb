"""Quota algorithms and arrival jitter over real HTTP, switched through the control API."""

from __future__ import annotations

import time

import httpx

from tests.fixtures.emulator import EmulatorHandle


def initialize(emulator: EmulatorHandle) -> httpx.Response:
    query = {"ProductCode": "eKYC", "MerchantBizId": "b1", "MerchantUserId": "u1"}
    return emulator.call_api("Initialize", query, {})


def policy(emulator: EmulatorHandle, **payload: object) -> httpx.Response:
    return emulator.http.put(f"{emulator.url}/_emulator/quota-algorithm", json=payload)


def test_token_bucket_serves_its_burst_then_throttles(emulator: EmulatorHandle) -> None:
    # One token every 1000 s: after the burst, nothing refills within the test.
    emulator.set_quotas(eKYC=0.001)
    answer = policy(emulator, algorithm="token-bucket", burst=4)
    assert answer.json() == {"algorithm": "token-bucket", "burst": 4}
    codes = [initialize(emulator).status_code for _ in range(6)]
    assert codes == [200] * 4 + [403] * 2
    stats = emulator.stats()["actions"]["Initialize"]["eKYC"]
    assert (stats["served"], stats["throttled"], stats["max_in_window"]) == (4, 2, 4)
    # The sliding window under the same quota admits one call a second.
    assert policy(emulator, algorithm="sliding").status_code == 200
    assert [initialize(emulator).status_code for _ in range(2)] == [200, 403]


def test_fixed_windows_over_http(emulator: EmulatorHandle) -> None:
    emulator.set_quotas(eKYC=3)
    assert policy(emulator, algorithm="fixed").json() == {"algorithm": "fixed", "burst": None}
    codes = [initialize(emulator).status_code for _ in range(8)]
    # Eight quick calls span at most two whole seconds on a loaded machine: 3 to 6 served.
    assert 3 <= codes.count(200) <= 6
    assert codes.count(403) >= 2


def test_policy_validation_and_reset(emulator: EmulatorHandle) -> None:
    url = f"{emulator.url}/_emulator/quota-algorithm"
    for bad in (
        {"algorithm": "leaky"},
        {"algorithm": "token-bucket", "burst": 0},
        {"burst": 3},
        {"algorithm": "fixed", "extra": 1},
    ):
        response = emulator.http.put(url, json=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]
    assert policy(emulator, algorithm="fixed").status_code == 200
    emulator.reset(quotas=True)
    assert emulator.http.get(url).json() == {"algorithm": "sliding", "burst": None}


def test_arrival_jitter_delays_calls_up_to_the_bound(emulator: EmulatorHandle) -> None:
    emulator.set_faults(arrival_jitter_ms=400, actions=["Initialize"])
    took = []
    for _ in range(8):
        began = time.monotonic()
        assert initialize(emulator).status_code == 200
        took.append(time.monotonic() - began)
    # Uniform delays in 0..400 ms: all eight under 100 ms has probability (1/4)^8.
    assert max(took) >= 0.1
    # Other actions are not delayed.
    emulator.set_faults(arrival_jitter_ms=60_000)
    check = emulator.call_api("CheckResult", {"MerchantBizId": "b", "TransactionId": "hk1"})
    assert check.status_code == 400
