"""Everything the running emulator holds: config, clock, keys, quotas, transactions, stats."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import random
from dataclasses import dataclass
from typing import Any

import httpx

from worker.emulator.auth import Authenticator, NonceCache
from worker.emulator.callbacks import CallbackDispatcher
from worker.emulator.calls import CallLog
from worker.emulator.clock import EmulatedClock
from worker.emulator.config import EmulatorConfig, Faults
from worker.emulator.media import ImageCache
from worker.emulator.quotas import QuotaBook
from worker.emulator.transactions import Transaction, TransactionStore

# Real seconds between two sweeps for results past retention.
SWEEP_INTERVAL = 0.5


@dataclass
class DownloadStats:
    requests: int = 0
    completed: int = 0
    broken: int = 0
    partial: int = 0
    bytes_sent: int = 0
    forbidden: int = 0
    not_found: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EmulatorState:
    """Shared by the provider API, the evidence downloads and the control API (one process)."""

    def __init__(self, config: EmulatorConfig, clock: EmulatedClock | None = None) -> None:
        self.config = config
        self.clock = clock if clock is not None else EmulatedClock()
        self.quotas = QuotaBook(
            config.quotas, algorithm=config.quota_algorithm, burst=config.quota_burst
        )
        self.nonces = NonceCache(config.date_window)
        self.auth = Authenticator(config.access_keys, config.date_window, self.nonces)
        self.store = TransactionStore(config.retention)
        self.images = ImageCache()
        self.calls = CallLog()
        self.initial_faults = Faults(**config.faults.as_dict())
        self.faults = Faults(**config.faults.as_dict())
        self._callback_dice = random.Random(self.faults.drop_callbacks_seed)
        self.callbacks = CallbackDispatcher(
            config.callback_retries, config.callback_retry_interval, config.callback_timeout
        )
        self.downloads = DownloadStats()
        self.rng = random.Random()
        self.link_key = os.urandom(32)
        self.fetch_client: httpx.AsyncClient | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.callbacks.start()
        self.fetch_client = httpx.AsyncClient(
            timeout=self.config.image_fetch_timeout, follow_redirects=False, trust_env=False
        )
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.callbacks.close()
        if self.fetch_client is not None:
            await self.fetch_client.aclose()

    async def _sweep(self) -> None:
        while True:
            self.purge()
            await asyncio.sleep(SWEEP_INTERVAL)

    def purge(self) -> int:
        """Delete the results past retention on the emulated clock; how many went."""
        gone = self.store.purge(self.clock.now())
        for transaction_id in gone:
            self.images.discard(transaction_id)
        return len(gone)

    def set_faults(self, values: dict[str, Any]) -> None:
        """Merge fault values; setting the callback drop share or seed restarts its sequence."""
        self.faults.update(values)
        if {"drop_callbacks", "drop_callbacks_seed"} & values.keys():
            self._callback_dice = random.Random(self.faults.drop_callbacks_seed)

    def send_callback(self, tx: Transaction, wanted: bool) -> None:
        """Send the completion callback unless unwanted or dropped by the ``drop_callbacks`` fault.

        The drop decisions are a sequence drawn from ``drop_callbacks_seed``: the same
        completions in the same order lose the same callbacks on every run.
        """
        if tx.callback_url is None:
            return
        if not wanted:
            tx.callback_state = "suppressed"
            return
        share = self.faults.drop_callbacks
        if share > 0 and self._callback_dice.random() < share:
            tx.callback_state = "dropped"
            self.callbacks.stats.dropped += 1
            return
        self.callbacks.schedule(tx)

    def link_signature(self, transaction_id: str, expires: int) -> str:
        """HMAC over the evidence path and expiry: links cannot be forged or extended."""
        message = f"{transaction_id}\n{expires}".encode()
        return hmac.new(self.link_key, message, hashlib.sha256).hexdigest()[:40]

    def reset(
        self,
        *,
        stats: bool = True,
        state: bool = False,
        clock: bool = False,
        faults: bool = False,
        quotas: bool = False,
    ) -> None:
        """Reset the chosen parts (``state`` = transactions and the nonce cache)."""
        if stats:
            self.quotas.reset_stats()
            self.calls.clear()
            self.callbacks.reset_stats()
            self.downloads = DownloadStats()
        if state:
            self.store.clear()
            self.images.clear()
            self.nonces.clear()
        if clock:
            self.clock.reset()
        if faults:
            self.faults = Faults(**self.initial_faults.as_dict())
            self._callback_dice = random.Random(self.faults.drop_callbacks_seed)
        if quotas:
            self.quotas.reset_quotas()

    def stats(self) -> dict[str, Any]:
        return {
            "actions": self.quotas.snapshot(),
            "rejected": dict(self.quotas.rejected),
            "downloads": self.downloads.as_dict(),
            "callbacks": self.callbacks.stats.as_dict(),
            "transactions": {
                "count": len(self.store),
                "completed": self.store.completed_count(),
                "deleted": self.store.deleted,
            },
        }
