"""The webhook events: their models, ids, the generated reference page, and the secret's form."""

from __future__ import annotations

import base64
import json
import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from celery import Celery

from worker.app import create_app
from worker.events import EVENT_MODELS, build, event_id, reference_page
from worker.jobs import EVENT_TYPES, CelerySender, Notice, transaction_ended
from worker.jobs.outbox import Claimed
from worker.queues import QUEUE_WEBHOOKS, TASK_SEND
from worker.settings import SettingsError, load_settings, webhook_key
from worker.wiring.blocks import build_core, build_sender

WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "webhook-events.md"


def test_the_reference_page_is_current() -> None:
    # Regenerate with: python -m worker.devtools.docsgen
    assert PAGE.read_text() == reference_page()


def test_every_event_type_has_a_model_and_a_schema_on_the_page() -> None:
    assert tuple(EVENT_MODELS) == EVENT_TYPES
    page = reference_page()
    for kind, model in EVENT_MODELS.items():
        assert f"## `{kind}`" in page
        assert json.dumps(model.model_json_schema(), indent=2) in page


def test_the_id_is_derived_from_type_subject_and_version() -> None:
    assert event_id("batch.paused", "b1", "1.0") == event_id("batch.paused", "b1", "1.0")
    others = {
        event_id("batch.paused", "b1", "2.0"),
        event_id("batch.paused", "b2", "1.0"),
        event_id("batch.cancelled", "b1", "1.0"),
    }
    assert event_id("batch.paused", "b1", "1.0") not in others
    assert len(others) == 3
    assert event_id("batch.paused", "b1", "1.0").startswith("evt_")


def test_the_body_is_the_envelope_and_the_same_for_every_build() -> None:
    notice = transaction_ended("tx-1", "abandoned", at=1_700_000_000.5, reason="lifetime")
    first, second = build(notice), build(Notice.from_message(notice.to_message()))
    assert first == second
    msg_id, body = first
    assert msg_id == event_id("onboarding.abandoned", "tx-1", "1")
    assert json.loads(body) == {
        "type": "onboarding.abandoned",
        "timestamp": "2023-11-14T22:13:20.500000Z",
        "data": {"transaction_id": "tx-1", "state": "abandoned", "reason": "lifetime"},
    }


def test_data_that_does_not_fit_its_type_is_refused() -> None:
    notice = Notice("batch.paused", "b1", "1", 1.0, {"batch_id": "b1", "state": "running"})
    with pytest.raises(ValueError, match="validation error"):
        build(notice)
    with pytest.raises(ValueError, match="no event"):
        transaction_ended("tx-1", "archived", at=1.0, reason=None)
    with pytest.raises(ValueError, match="unknown event type"):
        Notice.from_message({**notice.to_message(), "type": "batch.resumed"})


KEY = bytes(range(32))


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_" + base64.b64encode(KEY).decode(),
        "whsec_" + base64.b64encode(KEY).decode().rstrip("="),  # unpadded, as libraries accept
    ],
)
def test_a_whsec_secret_gives_its_base64_key(secret: str) -> None:
    assert webhook_key(secret) == KEY


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (base64.b64encode(KEY).decode(), "must be whsec_"),  # the key without its prefix
        ("a plain passphrase of some length", "must be whsec_"),
        ("whsec_not*base64!", "not base64"),
        ("whsec_" + base64.b64encode(KEY[:23]).decode(), "23 bytes"),  # one byte short
    ],
)
def test_other_secrets_are_refused(secret: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        webhook_key(secret)
    assert len(webhook_key("whsec_" + base64.b64encode(KEY[:24]).decode())) == 24


def test_a_plain_secret_is_refused_at_load_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith("IDV_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IDV_MODE", "development")
    monkeypatch.setenv("IDV_WEBHOOK_URL", "https://h.example/hook")
    monkeypatch.setenv("IDV_WEBHOOK_SECRET", "plain-QzSecret")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert [var for var, _ in info.value.problems] == ["IDV_WEBHOOK_SECRET"]
    assert "whsec_" in str(info.value)
    assert "plain-QzSecret" not in str(info.value)
    monkeypatch.setenv("IDV_WEBHOOK_SECRET", "whsec_" + base64.b64encode(KEY).decode())
    assert load_settings().webhooks.webhook_secret is not None


def _webhook_queue(app: Celery) -> list[Any]:
    """The message bodies waiting on ``idv.webhooks`` of the in-memory broker (taken off)."""
    out = []
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue(QUEUE_WEBHOOKS)
        while True:
            try:
                message = queue.get(timeout=0.05)
            except queue.Empty:
                break
            out.append((message.headers["task"], message.payload))
            message.ack()
        queue.close()
    return out


@pytest.mark.parametrize("configured", [True, False])
def test_the_built_sender_announces_only_to_a_configured_webhook(configured: bool) -> None:
    hook = {"webhook_url": "https://h.example/hook", "webhook_secret": WHSEC} if configured else {}
    settings = load_settings(broker_url="memory://", **hook)
    app = create_app(settings)
    notice = transaction_ended("tx-1", "abandoned", at=1.0, reason="never completed")
    with ExitStack() as stack:
        core = build_core(settings, stack, redis=fakeredis.FakeRedis())
        sender = build_sender(core, app, stack)
        _webhook_queue(app)
        sender.notify(notice)
        sent = _webhook_queue(app)
    if not configured:
        assert sent == []
        return
    # The event is in the outbox first; the message only names it.
    [(task, (args, kwargs, _))] = sent
    evt = event_id(notice.type, notice.subject, notice.version)
    assert (task, args, kwargs) == (TASK_SEND, [evt], {})
    assert isinstance(sender, CelerySender)
    assert sender.outbox is not None
    claimed = sender.outbox.claim(evt)
    assert isinstance(claimed, Claimed)
    assert claimed.notice == notice
