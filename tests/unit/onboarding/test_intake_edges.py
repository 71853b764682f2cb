"""Edges of the callback intake the mutation tier found untested: parameters given twice or
not as text, what a refusal says, a Redis that is down, a transaction the ledger does not
know, and the ledger's ids and completion time winning over what a callback claims."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import fakeredis
import pytest
from celery import Celery
from pydantic import SecretStr

from tests.unit.test_receiver import (
    OTHER_TOKEN,
    TID,
    TOKEN,
    drain,
    make_intake,
    make_ledger,
    make_settings,
    params,
)
from worker.app import create_app
from worker.jobs import OnboardingJob
from worker.onboarding import CallbackRejected, TokenChecker, flatten_params

OTHER_TID = "hk0123456789abcdef0123456789abce"


@pytest.fixture
def client() -> Iterator[fakeredis.FakeRedis]:
    server = fakeredis.FakeServer()
    redis_client = fakeredis.FakeRedis(server=server)
    yield redis_client
    redis_client.close()


@pytest.fixture
def app() -> Iterator[Celery]:
    celery = create_app(make_settings())
    celery.conf.broker_url = "memory://"
    drain(celery)
    yield celery
    drain(celery)


def _jobs(app: Celery) -> list[OnboardingJob]:
    return [OnboardingJob.from_message(m.decode()[1]["job"]) for m in drain(app)]


def test_a_parameter_given_twice_must_agree_and_be_text() -> None:
    assert flatten_params([("a", "1"), ("a", "1"), ("b", "2")]) == {"a": "1", "b": "2"}
    assert flatten_params({"a": ["1", "1"]}) == {"a": "1"}
    for bad, why in (
        ([("a", "1"), ("a", "2")], "given more than once"),
        ({"a": ["1", "2"]}, "given more than once"),
        ({"a": 1}, "must be a string"),
        ({"a": ["1", None]}, "must be a string"),
    ):
        with pytest.raises(CallbackRejected) as caught:
            flatten_params(bad)  # type: ignore[arg-type]
        assert (caught.value.status, caught.value.outcome) == (400, "invalid"), bad
        assert why in caught.value.reason


def test_a_refusal_says_status_outcome_and_reason() -> None:
    exc = CallbackRejected(403, "forbidden", "callbackToken does not match")
    assert str(exc) == "403 forbidden: callbackToken does not match"
    assert not exc.retryable
    assert not CallbackRejected(499, "invalid", "x").retryable
    assert CallbackRejected(500, "unavailable", "x").retryable
    assert CallbackRejected(503, "unavailable", "x").retryable


def test_a_bad_transaction_id_names_the_parameter(client: fakeredis.FakeRedis, app: Celery) -> None:
    intake = make_intake(make_settings(), client, app)
    with pytest.raises(CallbackRejected) as caught:
        intake.check(params(transactionId="hk!bad"))
    assert caught.value.status == 400
    assert caught.value.reason.startswith("transactionId:")


def test_tokens_are_configured_by_a_static_list_or_by_the_secret(
    client: fakeredis.FakeRedis, app: Celery
) -> None:
    assert TokenChecker([TOKEN]).configured
    assert not TokenChecker([""]).configured
    secret_only = make_settings(callback_tokens=[], callback_token_secret=SecretStr("s" * 32))
    assert make_intake(secret_only, client, app).tokens_configured
    assert make_intake(make_settings(), client, app).tokens_configured
    neither = make_settings(callback_tokens=[])
    assert not make_intake(neither, client, app).tokens_configured


def test_a_refused_token_is_logged_as_a_warning(
    client: fakeredis.FakeRedis, app: Celery, caplog: pytest.LogCaptureFixture
) -> None:
    intake = make_intake(make_settings(), client, app)
    with caplog.at_level(logging.INFO, logger="idv.callbacks"):
        with pytest.raises(CallbackRejected):
            intake.submit(params(callbackToken="guess"))
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warned] == [
            "callback refused: wrong or missing callbackToken"
        ]
        caplog.clear()
        with pytest.raises(CallbackRejected):
            intake.submit(params(passed="maybe"))  # refused, but not for its token
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_completion_time_is_the_one_given(client: fakeredis.FakeRedis, app: Celery) -> None:
    intake = make_intake(make_settings(), client, app, clock=lambda: 5_000.0)
    first = intake.submit(params(), received_at=1_000.0)
    assert first.status == "accepted"
    # The ledger keeps no completion time from a callback (only a worker that saw the result
    # sets one): a forced repeat's job runs from when it was received.
    intake.submit(params(callbackToken=OTHER_TOKEN), received_at=2_000.0, force=True)
    assert [job.completed_at for job in _jobs(app)] == [1_000.0, 2_000.0]
    intake.submit(params(transactionId=OTHER_TID))
    assert [job.completed_at for job in _jobs(app)] == [5_000.0]


def test_the_ledgers_ids_win_over_the_callbacks(client: fakeredis.FakeRedis, app: Celery) -> None:
    settings = make_settings()
    assert make_ledger(settings, client).record_start(TID, "eKYC_PRO", "bizLedger01")
    intake = make_intake(settings, client, app)
    accepted = intake.submit(params(productCode="eKYC", merchantBizId="bizClaimed02"))
    assert accepted.status == "accepted"
    (job,) = _jobs(app)
    assert (job.product_code, job.merchant_biz_id) == ("eKYC_PRO", "bizLedger01")
    # Without a record, the callback's own ids are all there is.
    intake.submit(params(transactionId=OTHER_TID, productCode="eKYC", merchantBizId="bizOwn03"))
    (job,) = _jobs(app)
    assert (job.product_code, job.merchant_biz_id) == ("eKYC", "bizOwn03")


def test_an_unknown_transaction_is_refused_when_required(
    client: fakeredis.FakeRedis, app: Celery
) -> None:
    strict = make_settings(callback_require_known=True)
    with pytest.raises(CallbackRejected) as caught:
        make_intake(strict, client, app).submit(params())
    assert (caught.value.status, caught.value.outcome) == (403, "unknown")
    assert drain(app) == []
    assert make_intake(make_settings(), client, app).submit(params()).status == "accepted"


def test_a_redis_that_is_down_is_a_retryable_503(app: Celery) -> None:
    server = fakeredis.FakeServer()
    down = fakeredis.FakeRedis(server=server)
    server.connected = False
    with pytest.raises(CallbackRejected) as caught:
        make_intake(make_settings(), down, app).submit(params())
    assert (caught.value.status, caught.value.outcome) == (503, "unavailable")
    assert caught.value.retryable
    assert drain(app) == []
    down.close()
