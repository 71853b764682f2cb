"""Edges of the webhook sender the mutation tier found untested: the exact 2xx range, which
failures are retried, what a failure says, the request's headers, and a closed sender."""

from __future__ import annotations

import base64

import httpx
import pytest

from worker import __version__
from worker.webhook import WebhookError, WebhookSender

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def _sender(answer: int, seen: list[httpx.Request] | None = None) -> WebhookSender:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(answer)

    return WebhookSender(
        "https://hooks.example/idv",
        SECRET,
        transport=httpx.MockTransport(handler),
        clock=lambda: 2_000.0,
    )


@pytest.mark.parametrize("answer", [200, 201, 299])
def test_every_2xx_is_delivered(answer: int) -> None:
    assert _sender(answer).post("evt_1", b"{}") == answer


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [(300, False), (199, False), (425, True), (426, False), (499, False), (500, True)],
)
def test_the_edges_of_delivery_and_of_retrying(answer: int, retryable: bool) -> None:
    with pytest.raises(WebhookError) as caught:
        _sender(answer).post("evt_1", b"{}")
    err = caught.value
    assert (err.status, err.retryable) == (answer, retryable)
    assert err.reason == err.code == f"HTTP {answer}"
    assert str(err) == f"webhook delivery failed: HTTP {answer}"


def test_the_request_says_what_it_carries_and_who_sends_it() -> None:
    seen: list[httpx.Request] = []
    _sender(204, seen).post("evt_1", b'{"a":1}')
    (request,) = seen
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"idv-worker/{__version__}"
    assert request.content == b'{"a":1}'


def test_a_closed_sender_sends_nothing() -> None:
    seen: list[httpx.Request] = []
    sender = _sender(204, seen)
    sender.close()
    with pytest.raises(RuntimeError):
        sender.post("evt_1", b"{}")
    assert seen == []
