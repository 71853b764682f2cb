"""Webhook: POST each event to the user's own endpoint, signed as Standard Webhooks.

Configured by ``IDV_WEBHOOK_URL`` and ``IDV_WEBHOOK_SECRET`` (both, or neither); the secret is
``whsec_<base64 key>``, anything else is refused at load (``worker.settings.webhook_key``).
Each POST carries the event's JSON body (``worker.events``: ``{"type", "timestamp", "data"}``)
and the headers of https://www.standardwebhooks.com/::

    webhook-id:        evt_<...>     (the same in every attempt of one event: de-duplicate)
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>

so any Standard Webhooks library verifies it with the same secret. Each event goes through the
outbox (``worker.jobs.outbox``, ``worker.events.delivery``): retried for network errors, 408, 425,
429 and 5xx; any other status is final (dead letter of kind ``webhook``). Redirects are not
followed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

import httpx

from worker import __version__
from worker.errors import ConfigurationError, IdvError
from worker.jobs import KIND_WEBHOOK as KIND_WEBHOOK
from worker.settings import WebhookSettings, webhook_key

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
_RETRYABLE_STATUS = frozenset({408, 425, 429})


class WebhookError(IdvError):
    """Delivery failed; ``status`` is the HTTP status (None: no answer), ``retryable`` whether
    trying again later may succeed. Never contains the URL (it may hold a token)."""

    def __init__(self, reason: str, *, status: int | None, retryable: bool) -> None:
        self.reason = reason
        self.status = status
        self.retryable = retryable
        self.code = reason
        super().__init__(f"webhook delivery failed: {reason}")


class WebhookConfigError(ConfigurationError):
    """The webhook is half configured (URL without secret or the reverse)."""


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value of ``body`` sent as ``msg_id`` at ``timestamp``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class WebhookSender:
    """Posts events to one endpoint; ``transport`` replaces the network, ``clock`` the time
    that is signed (both for tests)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self._key = webhook_key(secret)
        self._clock = clock
        self._http = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=False,
            headers={"User-Agent": f"idv-worker/{__version__}"},
        )

    @classmethod
    def from_settings(
        cls, settings: WebhookSettings, *, transport: httpx.BaseTransport | None = None
    ) -> WebhookSender | None:
        """A sender for ``IDV_WEBHOOK_URL``, or None when no webhook is configured."""
        url, secret = settings.webhook_url, settings.webhook_secret
        if url is None and secret is None:
            return None
        if url is None or secret is None or not secret.get_secret_value():
            raise WebhookConfigError("set both IDV_WEBHOOK_URL and IDV_WEBHOOK_SECRET, or neither")
        return cls(
            url,
            secret.get_secret_value(),
            timeout_s=settings.webhook_timeout_s,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def post(self, msg_id: str, body: bytes) -> int:
        """POST one event, signed now; returns the 2xx status or raises ``WebhookError``."""
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: msg_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._key, msg_id, timestamp, body),
        }
        try:
            response = self._http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise WebhookError(type(exc).__name__, status=None, retryable=True) from None
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return status
        retryable = status >= 500 or status in _RETRYABLE_STATUS
        raise WebhookError(f"HTTP {status}", status=status, retryable=retryable)
