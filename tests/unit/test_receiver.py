"""Receiver and callback intake: token check, validation, de-duplication, HTTP answers.

The HTTP layer runs in-process (httpx ``ASGITransport``) over fakeredis and Celery's in-memory
broker, so every answer and every enqueued message is real but nothing listens on a port.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import httpx
import pytest
from celery import Celery
from pydantic import SecretStr

from worker.app import create_app
from worker.cloudauth import DEFAULT_QUOTAS
from worker.jobs import CelerySender, OnboardingJob, default_merchant_biz_id
from worker.keys import RedisKeys
from worker.ledger import Ledger, State
from worker.onboarding import (
    CallbackEvent,
    CallbackIntake,
    CallbackRejected,
    TokenChecker,
    flatten_params,
    parse_callback,
)
from worker.queues import QUEUE_REALTIME, TASK_PROCESS
from worker.ratelimit import QuotaTable
from worker.receiver import CallbackReceiver
from worker.settings import Settings, load_settings

TOKEN = "tok-primary-0001"
OTHER_TOKEN = "tok-rotated-0002"
TID = "hk0123456789abcdef0123456789abcd"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "callback_tokens": [SecretStr(TOKEN), SecretStr(OTHER_TOKEN)],
        "redis_url": "redis://127.0.0.1:1/0",  # never contacted: fakeredis is injected
        "broker_url": "memory://",
    }
    values.update(overrides)
    return load_settings(**values)


def make_ledger(
    settings: Settings, client: fakeredis.FakeRedis, clock: Callable[[], float] = time.time
) -> Ledger:
    """The ledger as the builders make it (``worker.wiring.blocks.build_ledger``)."""
    return Ledger(
        client,
        RedisKeys(settings.redis.namespace),
        settings.ledger,
        evidence_window_s=settings.onboarding.evidence_window_s,
        require_known=settings.callbacks.callback_require_known,
        clock=clock,
    )


def make_intake(
    settings: Settings,
    client: fakeredis.FakeRedis,
    app: Celery,
    clock: Callable[[], float] = time.time,
) -> CallbackIntake:
    """The intake as the builders make it (``worker.wiring.services.build_intake``)."""
    return CallbackIntake(
        settings.callbacks,
        make_ledger(settings, client, clock),
        CelerySender(app),
        onboarding=settings.onboarding,
        known_product=QuotaTable(settings.quotas, DEFAULT_QUOTAS).knows,
        clock=clock,
    )


def parse(params: dict[str, str], settings: Settings) -> CallbackEvent:
    return parse_callback(
        params,
        default_product=settings.onboarding.onboarding_product,
        known_product=QuotaTable(settings.quotas, DEFAULT_QUOTAS).knows,
    )


def params(**overrides: str) -> dict[str, str]:
    base = {"transactionId": TID, "passed": "Y", "subCode": "200", "callbackToken": TOKEN}
    base.update(overrides)
    return {k: v for k, v in base.items() if v != "<drop>"}


def drain(app: Celery) -> list[Any]:
    """Every message waiting on the realtime queue of the in-memory broker."""
    out = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(QUEUE_REALTIME)
        while True:
            try:
                message = queue.get(timeout=0.05)
            except queue.Empty:
                break
            out.append(message)
            message.ack()
        queue.close()
    return out


# ------------------------------------------------------------------ pure checks


def test_token_checker_accepts_every_configured_token_and_nothing_else() -> None:
    checker = TokenChecker([TOKEN, OTHER_TOKEN])
    assert checker.matches(TOKEN)
    assert checker.matches(OTHER_TOKEN)
    assert not checker.matches(TOKEN + "x")
    assert not checker.matches(TOKEN[:-1])
    assert not checker.matches("")
    assert not checker.matches(None)
    assert not TokenChecker([]).matches("")
    assert not TokenChecker([]).configured


def test_parse_callback_valid_uses_defaults() -> None:
    settings = make_settings()
    event = parse(params(), settings)
    assert event.transaction_id == TID
    assert event.passed == "Y"
    assert event.sub_code == "200"
    assert event.product_code == settings.onboarding.onboarding_product
    assert event.merchant_biz_id == default_merchant_biz_id(TID)
    assert len(event.merchant_biz_id) == 32
    assert event.merchant_biz_id.isalnum()


def test_parse_callback_takes_product_and_merchant_biz_id_from_the_url() -> None:
    event = parse(params(productCode="FACE_LIVENESS", merchantBizId="order42"), make_settings())
    assert event.product_code == "FACE_LIVENESS"
    assert event.merchant_biz_id == "order42"


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"transactionId": "<drop>"}, "missing parameter transactionId"),
        ({"transactionId": ""}, "missing parameter transactionId"),
        ({"transactionId": "../etc/passwd"}, "transactionId"),
        ({"transactionId": "a b"}, "transactionId"),
        ({"transactionId": "x" * 65}, "longer than 64"),
        ({"passed": "<drop>"}, "missing parameter passed"),
        ({"passed": "yes"}, "passed must be Y or N"),
        ({"subCode": "<drop>"}, "missing parameter subCode"),
        ({"subCode": "20O"}, "subCode must be"),
        ({"productCode": "NOPE"}, "productCode"),
        ({"merchantBizId": "has-dash"}, "merchantBizId"),
    ],
)
def test_parse_callback_rejects_with_a_clear_message(
    overrides: dict[str, str], fragment: str
) -> None:
    with pytest.raises(CallbackRejected) as info:
        parse(params(**overrides), make_settings())
    assert info.value.status == 400
    assert fragment in info.value.reason
    # The offending value is never echoed back.
    for value in overrides.values():
        if len(value) > 3 and value != "<drop>":
            assert value not in info.value.reason


def test_flatten_params_rejects_conflicting_repeats() -> None:
    assert flatten_params([("a", "1"), ("a", "1")]) == {"a": "1"}
    assert flatten_params({"a": ["1"]}) == {"a": "1"}
    with pytest.raises(CallbackRejected, match="more than once"):
        flatten_params([("transactionId", "a"), ("transactionId", "b")])


def test_job_message_round_trip_and_validation() -> None:
    job = OnboardingJob(
        transaction_id=TID,
        product_code="eKYC",
        merchant_biz_id="biz1",
        completed_at=1_700_000_000.0,
        window_s=1800.0,
        claimed_passed="Y",
        claimed_sub_code="200",
    )
    assert OnboardingJob.from_message(job.to_message()) == job
    assert job.deadline == 1_700_001_800.0
    bad = {**job.to_message(), "merchant_biz_id": "no-dashes-allowed"}
    with pytest.raises(ValueError, match="merchant_biz_id"):
        OnboardingJob.from_message(bad)


# ------------------------------------------------------------------ intake


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    client = fakeredis.FakeRedis()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def celery_app() -> Iterator[Celery]:
    app = create_app(make_settings())
    app.conf.broker_url = "memory://"
    drain(app)
    yield app
    drain(app)


def test_intake_enqueues_once_with_expiry_at_the_window_end(
    fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    settings = make_settings()
    intake = make_intake(settings, fake_redis, celery_app, clock=lambda: 1_700_000_000.0)
    first = intake.submit(params())
    second = intake.submit(params(callbackToken=OTHER_TOKEN))
    assert first.status == "accepted"
    assert second.status == "duplicate"
    assert first.deadline == 1_700_000_000.0 + settings.onboarding.evidence_window_s
    messages = drain(celery_app)
    assert len(messages) == 1
    headers = messages[0].headers
    assert headers["task"] == TASK_PROCESS
    assert headers["expires"].startswith("2023-11-14T22:43:20")  # 1_700_001_800 in UTC
    _args, kwargs, _embed = messages[0].decode()
    job = OnboardingJob.from_message(kwargs["job"])
    assert job.transaction_id == TID
    assert job.completed_at == 1_700_000_000.0
    # The ledger holds the decision: completed, its work due after IDV_RECONCILE_AFTER_S.
    entry = make_ledger(settings, fake_redis).get(TID)
    assert entry is not None
    assert entry.state is State.COMPLETED
    assert entry.due_at == 1_700_000_000.0 + settings.ledger.reconcile_after_s


def test_intake_force_requeues_a_repeat(
    fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    intake = make_intake(make_settings(), fake_redis, celery_app)
    assert intake.submit(params()).status == "accepted"
    assert intake.submit(params(), force=True).status == "accepted"
    assert len(drain(celery_app)) == 2


def test_intake_unmarks_the_callback_when_enqueueing_fails(
    fake_redis: fakeredis.FakeRedis,
) -> None:
    from tests.fixtures.servers import free_port

    app = create_app(make_settings())
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    intake = make_intake(make_settings(), fake_redis, app)
    with pytest.raises(CallbackRejected) as info:
        intake.submit(params())
    assert info.value.status == 503
    # The provider resends on non-200: the resend must not be taken for a duplicate.
    entry = make_ledger(make_settings(), fake_redis).get(TID)
    assert entry is not None
    assert entry.due_at is not None
    assert entry.due_at <= time.time()


def test_intake_wrong_token_is_refused_before_validation(
    fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    intake = make_intake(make_settings(), fake_redis, celery_app)
    with pytest.raises(CallbackRejected) as info:
        intake.submit(params(callbackToken="guess", passed="maybe"))
    assert info.value.status == 403
    with pytest.raises(CallbackRejected) as info:
        intake.submit(params(callbackToken="<drop>"))
    assert info.value.status == 403
    assert make_ledger(make_settings(), fake_redis).get(TID) is None
    assert drain(celery_app) == []


# ------------------------------------------------------------------ HTTP


@pytest.fixture
def receiver(fake_redis: fakeredis.FakeRedis, celery_app: Celery) -> Iterator[CallbackReceiver]:
    app = CallbackReceiver(make_settings(), redis_client=fake_redis, celery=celery_app, threads=2)
    app.startup()
    yield app
    app.shutdown()


async def _request(app: CallbackReceiver, method: str, url: str, **kw: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        return await client.request(method, url, **kw)


def counter(client: fakeredis.FakeRedis, outcome: str) -> float:
    raw = client.hget("idv:metrics:counters", f'idv_callbacks_total{{outcome="{outcome}"}}')
    return float(raw or 0)


@pytest.mark.anyio
async def test_http_get_accepts_then_reports_duplicate(
    receiver: CallbackReceiver, fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    first = await _request(receiver, "GET", "/callback", params=params())
    second = await _request(receiver, "GET", "/callback/", params=params())
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert (second.status_code, second.json()) == (200, {"status": "duplicate"})
    assert len(drain(celery_app)) == 1
    assert counter(fake_redis, "accepted") == 1
    assert counter(fake_redis, "duplicate") == 1


@pytest.mark.anyio
async def test_http_post_form_is_accepted(receiver: CallbackReceiver, celery_app: Celery) -> None:
    response = await _request(receiver, "POST", "/callback", data=params())
    assert response.status_code == 200
    assert len(drain(celery_app)) == 1


@pytest.mark.anyio
async def test_http_wrong_token_is_403_and_counted(
    receiver: CallbackReceiver, fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    response = await _request(receiver, "GET", "/callback", params=params(callbackToken="nope"))
    assert response.status_code == 403
    assert "nope" not in response.text
    assert drain(celery_app) == []
    assert counter(fake_redis, "forbidden") == 1


@pytest.mark.anyio
async def test_http_malformed_is_400_with_a_message(receiver: CallbackReceiver) -> None:
    response = await _request(receiver, "GET", "/callback", params=params(subCode="abc"))
    assert response.status_code == 400
    assert response.json() == {"error": "subCode must be 1 to 16 digits"}


@pytest.mark.anyio
async def test_http_oversized_is_413(receiver: CallbackReceiver) -> None:
    big = params(extra="x" * 9000)
    response = await _request(receiver, "GET", "/callback", params=big)
    assert response.status_code == 413
    response = await _request(receiver, "POST", "/callback", data=big)
    assert response.status_code == 413


@pytest.mark.anyio
async def test_http_non_form_body_is_415(receiver: CallbackReceiver) -> None:
    response = await _request(receiver, "POST", "/callback", json=params())
    assert response.status_code == 415


@pytest.mark.anyio
async def test_http_routes_health_metrics_and_errors(
    fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    settings = make_settings(metrics_on_callback_port=True)
    receiver = CallbackReceiver(settings, redis_client=fake_redis, celery=celery_app, threads=2)
    health = await _request(receiver, "GET", "/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    await _request(receiver, "GET", "/callback", params=params(callbackToken="nope"))
    metrics = await _request(receiver, "GET", "/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'idv_callbacks_total{outcome="forbidden"} 1' in metrics.text
    assert (await _request(receiver, "GET", "/other")).status_code == 404
    assert (await _request(receiver, "PUT", "/callback")).status_code == 405
    receiver.shutdown()


@pytest.mark.anyio
async def test_http_metrics_are_not_on_the_callback_port_by_default(
    receiver: CallbackReceiver,
) -> None:
    assert (await _request(receiver, "GET", "/metrics")).status_code == 404
    assert (await _request(receiver, "GET", "/healthz")).status_code == 200


# ------------------------------------------------------------------ limits


@pytest.mark.anyio
async def test_an_address_with_too_many_rejections_gets_429_without_work(
    fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    settings = make_settings(receiver_reject_limit=3, receiver_reject_window_s=60)
    app = CallbackReceiver(settings, redis_client=fake_redis, celery=celery_app, threads=2)
    app.startup()
    try:
        for _ in range(3):
            bad = await _request(app, "GET", "/callback", params=params(callbackToken="nope"))
            assert bad.status_code == 403
        # Now even a good callback from that address is refused before any work.
        limited = await _request(app, "GET", "/callback", params=params())
        assert limited.status_code == 429
        assert limited.headers["retry-after"]
        assert drain(celery_app) == []
        assert make_ledger(settings, fake_redis).get(TID) is None
    finally:
        app.shutdown()


def test_reject_limiter_window_and_bounded_memory() -> None:
    from worker.receiver import MAX_TRACKED_ADDRESSES, RejectLimiter

    now = [0.0]
    limiter = RejectLimiter(2, 10.0, clock=lambda: now[0])
    limiter.rejected("a")
    assert not limiter.blocked("a")
    limiter.rejected("a")
    assert limiter.blocked("a")
    assert not limiter.blocked("b")
    now[0] = 10.5  # the window passed
    assert not limiter.blocked("a")
    for n in range(MAX_TRACKED_ADDRESSES + 50):
        limiter.rejected(f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._hits) <= MAX_TRACKED_ADDRESSES


@pytest.mark.anyio
async def test_a_body_that_does_not_arrive_in_time_is_408(
    fake_redis: fakeredis.FakeRedis, celery_app: Celery
) -> None:
    import anyio

    settings = make_settings(receiver_read_timeout_s=0.2)
    app = CallbackReceiver(settings, redis_client=fake_redis, celery=celery_app, threads=2)
    app.startup()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await anyio.sleep(5)  # the client stopped sending half-way
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/callback",
        "query_string": b"",
        "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
        "client": ("192.0.2.1", 5000),
    }
    try:
        with anyio.fail_after(3):
            await app(scope, receive, send)
    finally:
        app.shutdown()
    assert sent[0]["status"] == 408
