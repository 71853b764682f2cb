"""Result webhook: POST each finished result record to the user's own endpoint, HMAC-signed.

Configured by ``IDV_WEBHOOK_URL`` and ``IDV_WEBHOOK_SECRET`` (both, or neither). The body is the
JSON event below; the signature header lets the receiver check origin and freshness::

    X-Idv-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
    X-Idv-Event-Id:  <transaction id>:<record checked_at>   (stable across retries: de-duplicate)

    {"type": "onboarding.result", "id": "...", "created_at": "...", "data": <result record>}

The record holds outcomes and S3 pointers only (no images, no personal data). Delivery is retried
with backoff on the ``idv.webhooks`` queue for network errors, 408, 425, 429 and 5xx; any other
status is final (dead letter of kind ``webhook``). Redirects are not followed.
``verify_signature`` is the check a receiver runs (also usable in tests).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from worker import __version__
from worker.errors import ConfigurationError, IdvError
from worker.jobs import KIND_WEBHOOK as KIND_WEBHOOK
from worker.settings import WebhookSettings

SIGNATURE_HEADER = "X-Idv-Signature"
EVENT_ID_HEADER = "X-Idv-Event-Id"
EVENT_TYPE = "onboarding.result"
DEFAULT_TOLERANCE_S = 300
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


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Idv-Signature`` value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether ``header`` is a valid, fresh signature of ``body`` (constant-time compare)."""
    parts: dict[str, list[str]] = {}
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if sep:
            parts.setdefault(key, []).append(value)
    stamps = parts.get("t", [])
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    ok = False
    for candidate in parts.get("v1", []):
        ok |= hmac.compare_digest(candidate.encode(), expected.encode())
    return ok


def build_event(record: Mapping[str, Any], *, now: float | None = None) -> dict[str, Any]:
    """The webhook body for one result record."""
    created = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return {
        "type": EVENT_TYPE,
        "id": event_id(record),
        "created_at": created.isoformat(timespec="milliseconds"),
        "data": dict(record),
    }


def event_id(record: Mapping[str, Any]) -> str:
    """Stable id of the event for one record (the receiver de-duplicates on it)."""
    return f"{record['transaction_id']}:{record.get('checked_at', '')}"


class WebhookSender:
    """Posts events to one endpoint; ``transport`` replaces the network in tests."""

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
        self._secret = secret
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

    def deliver(self, record: Mapping[str, Any]) -> int:
        """POST the event for ``record``; returns the 2xx status or raises ``WebhookError``."""
        now = self._clock()
        event = build_event(record, now=now)
        body = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body, int(now)),
            EVENT_ID_HEADER: event["id"],
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
