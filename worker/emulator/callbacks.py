"""Callback delivery: ``GET <CallbackUrl>`` with ``transactionId``, ``passed``, ``subCode`` and
``callbackToken`` appended, retried when not answered 200. Runs in background tasks."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from worker.emulator.transactions import CallbackAttempt, Transaction

log = logging.getLogger(__name__)


def callback_url(tx: Transaction) -> str:
    """The callback URL with the provider's parameters appended (existing ones preserved)."""
    assert tx.callback_url is not None
    parts = urlsplit(tx.callback_url)
    params = [
        ("transactionId", tx.transaction_id),
        ("passed", tx.passed or ""),
        ("subCode", tx.sub_code or ""),
    ]
    if tx.callback_token is not None:
        params.append(("callbackToken", tx.callback_token))
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@dataclass
class CallbackStats:
    scheduled: int = 0
    attempts: int = 0
    delivered: int = 0
    failed: int = 0
    dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CallbackDispatcher:
    """Sends callbacks without blocking the caller; ``retries`` more attempts after a failure."""

    def __init__(self, retries: int, interval: float, timeout: float) -> None:
        self.retries = retries
        self.interval = interval
        self.timeout = timeout
        self.stats = CallbackStats()
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self.timeout, follow_redirects=False, trust_env=False
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    def schedule(self, tx: Transaction) -> None:
        if tx.callback_url is None:
            return
        self.stats.scheduled += 1
        tx.callback_state = "pending"
        task = asyncio.get_running_loop().create_task(self._deliver(tx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, tx: Transaction) -> None:
        if self._client is None:
            self.start()
        assert self._client is not None
        url = callback_url(tx)
        for attempt in range(1, self.retries + 2):
            status: int | None = None
            error: str | None = None
            try:
                response = await self._client.get(url)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            self.stats.attempts += 1
            tx.callbacks.append(CallbackAttempt(attempt, time.time(), status, error))
            log.debug("callback attempt %d: status=%s error=%s", attempt, status, error)
            if status == 200:
                self.stats.delivered += 1
                tx.callback_state = "delivered"
                return
            if attempt <= self.retries:
                await asyncio.sleep(self.interval)
        self.stats.failed += 1
        tx.callback_state = "failed"

    def reset_stats(self) -> None:
        self.stats = CallbackStats()
