"""Retry by call kind: idempotent calls are retried on unknown outcomes, billed ones held back;
every wait the provider asks for is capped."""

from __future__ import annotations

import httpx
import pytest

from tests.unit.cloudauth.test_client import FakeClock, Script, check, err, make_client, ok
from worker.cloudauth.errors import MalformedResponse, ThrottledError, TransientError
from worker.errors import is_retryable, retry_after
from worker.ratelimit import CallContext


def doc_ocr(client: object) -> object:
    return client.doc_ocr_v2(  # type: ignore[attr-defined]
        merchant_biz_id="b1", merchant_user_id="u1", doc_type="00000006", image_url="https://x/y"
    )


def test_a_check_result_read_timeout_stays_retryable_for_the_task() -> None:
    script = Script(httpx.ReadTimeout("timed out"))
    with make_client(script, max_attempts=2) as client, pytest.raises(TransientError) as info:
        check(client)
    assert info.value.maybe_processed
    assert not info.value.billed
    assert info.value.retryable  # the task retries it until the deadline
    assert is_retryable(info.value)
    assert len(script.requests) == 2


def test_a_doc_ocr_read_timeout_is_held_back() -> None:
    script = Script(httpx.ReadTimeout("timed out"))
    with make_client(script) as client, pytest.raises(TransientError) as info:
        doc_ocr(client)
    assert info.value.billed
    assert not info.value.retryable
    assert len(script.requests) == 1


def test_a_doc_ocr_connect_error_was_not_sent_and_stays_retryable() -> None:
    script = Script(httpx.ConnectError("refused"))
    with make_client(script, max_attempts=1) as client, pytest.raises(TransientError) as info:
        doc_ocr(client)
    assert not info.value.maybe_processed
    assert info.value.retryable


@pytest.mark.parametrize(
    ("action", "billed"), [("CheckResult", False), ("Initialize", False), ("DocOcrV2", True)]
)
def test_billed_follows_the_action(action: str, billed: bool) -> None:
    error = TransientError("x", action=action, code="HttpTimeout", maybe_processed=True)
    assert error.billed is billed
    assert error.retryable is not billed
    # An unknown action is treated as billed: never repeated blindly.
    assert not TransientError("x", action="Other", maybe_processed=True).retryable


def test_a_day_long_retry_after_is_capped_without_a_deadline() -> None:
    clock = FakeClock()
    script = Script(err(403, "Throttling.Api", {"x-acs-retry-after": "86400000"}), ok())
    with make_client(script, clock=clock, max_retry_after_s=30) as client:
        check(client)
    assert clock.sleeps == [30.0]


def test_a_retry_after_past_the_deadline_is_not_slept() -> None:
    clock = FakeClock()
    script = Script(err(403, "Throttling.Api", {"x-acs-retry-after": "20000"}), ok())
    ctx = CallContext(deadline=clock.t + 10)
    with make_client(script, clock=clock) as client, pytest.raises(ThrottledError):
        check(client, ctx)
    assert clock.sleeps == []
    assert len(script.requests) == 1


def test_retry_after_helper_caps() -> None:
    error = ThrottledError("x", retry_after=86_400.0)
    assert retry_after(error) == 86_400.0
    assert retry_after(error, 60.0) == 60.0
    assert retry_after(ValueError("x"), 60.0) is None


def test_malformed_success_is_retried_for_check_result_and_held_back_for_doc_ocr() -> None:
    empty = httpx.Response(200, json={"RequestId": "R", "Code": "Success"})
    script = Script(empty, ok())
    with make_client(script) as client:
        assert check(client).passed == "Y"
    assert len(script.requests) == 2
    script = Script(empty)
    with make_client(script) as client, pytest.raises(MalformedResponse) as info:
        doc_ocr(client)
    assert (info.value.field, info.value.retryable) == ("Result", False)
    assert len(script.requests) == 1
