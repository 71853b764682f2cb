"""Per-flow callback tokens: good for their own flow only; the intake takes them beside the
static list."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator

import fakeredis
import pytest
from celery import Celery
from pydantic import SecretStr

from worker.app import create_app
from worker.onboarding import CallbackIntake, CallbackRejected, derive_callback_token
from worker.settings import load_settings
from worker.wiring import Cli

SECRET = "per-flow-secret-0001"
TID = "hk0123456789abcdef0123456789abcd"


def test_a_token_is_bound_to_its_merchant_biz_id() -> None:
    one = derive_callback_token(SECRET, "biz0001")
    assert one == derive_callback_token(SECRET, "biz0001")
    assert len(one) == 64
    assert one != derive_callback_token(SECRET, "biz0002")
    assert one != derive_callback_token("other-secret", "biz0001")
    with pytest.raises(ValueError, match="secret"):
        derive_callback_token("", "biz0001")
    with pytest.raises(ValueError, match="merchant_biz_id"):
        derive_callback_token(SECRET, "")


def test_the_token_is_the_documented_hmac() -> None:
    # The formula of the module's docstring, which a merchant's own code may reproduce.
    label = b"idv-callback-token\x00"
    expected = hmac.new(SECRET.encode(), label + b"biz0001", hashlib.sha256).hexdigest()
    assert derive_callback_token(SECRET, "biz0001") == expected


@pytest.fixture
def intake() -> Iterator[CallbackIntake]:
    settings = load_settings(
        callback_tokens=[SecretStr("static-token")],
        callback_token_secret=SecretStr(SECRET),
        broker_url="memory://",
        redis_url="redis://127.0.0.1:1/0",
    )
    app: Celery = create_app(settings)
    client = fakeredis.FakeRedis()
    cli = Cli(settings, app=app, redis=client)  # the intake as the builders make it
    cli.ledger.record_start(TID, "ID_OCR_MIN", "biz0001")
    yield cli.intake()
    cli.close()
    client.close()


def _params(token: str, biz: str | None = "biz0001", tid: str = TID) -> dict[str, str]:
    out = {"transactionId": tid, "passed": "Y", "subCode": "200", "callbackToken": token}
    if biz is not None:
        out["merchantBizId"] = biz
    return out


def test_the_intake_accepts_the_derived_token_of_the_callbacks_own_flow(
    intake: CallbackIntake,
) -> None:
    token = derive_callback_token(SECRET, "biz0001")
    assert intake.check(_params(token)).merchant_biz_id == "biz0001"
    # Checked against the MerchantBizId the ledger stored: the callback need not repeat it.
    assert intake.check(_params(token, biz=None)).transaction_id == TID
    assert intake.check(_params("static-token", biz=None)).transaction_id == TID
    for bad in (
        _params(token, biz="biz0002"),  # the callback names another flow
        _params(derive_callback_token(SECRET, "biz0002"), biz="biz0002"),  # another flow's token
        _params(derive_callback_token("wrong", "biz0001")),
    ):
        with pytest.raises(CallbackRejected) as caught:
            intake.check(bad)
        assert caught.value.status == 403
    assert intake.tokens_configured
