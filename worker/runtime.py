"""Per-process resources: one Redis pool, one provider client, one S3 client, built lazily.

Nothing is created at import time. A Celery worker process builds its ``Runtime`` on first
use after the fork (``worker_process_init`` drops any inherited one) and closes it on
``worker_process_shutdown``. Services receive what they need from it as arguments.
"""

from __future__ import annotations

import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING

import httpx
import redis
from redis import Redis

from worker.observability import RedisMetrics
from worker.settings import Settings, load_settings

if TYPE_CHECKING:
    from worker.cloudauth.client import CloudAuthClient
    from worker.deadletter import DeadLetterStore
    from worker.leases import LeaseManager
    from worker.ratelimit import RedisRateLimiter
    from worker.records import ResultStore
    from worker.storage import S3ObjectStore


class Runtime:
    """The adapters of one process, created on first use and closed together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pid = os.getpid()

    @cached_property
    def redis(self) -> Redis:
        return redis.Redis.from_url(
            self.settings.redis_url,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=30,
            max_connections=64,
        )

    @cached_property
    def metrics(self) -> RedisMetrics:
        return RedisMetrics(self.redis, self.settings.namespace)

    @cached_property
    def limiter_redis(self) -> Redis:
        """The limiter's own client: short timeouts, one retry, so it fails closed at once."""
        from worker.ratelimit import limiter_redis

        return limiter_redis(self.settings)

    @cached_property
    def limiter(self) -> RedisRateLimiter:
        from worker.ratelimit import RedisRateLimiter

        return RedisRateLimiter(self.limiter_redis, self.settings, metrics=self.metrics)

    @cached_property
    def client(self) -> CloudAuthClient:
        from worker.cloudauth.client import CloudAuthClient

        return CloudAuthClient(self.settings, gate=self.limiter)

    @cached_property
    def objects(self) -> S3ObjectStore:
        from worker.storage import S3ObjectStore

        return S3ObjectStore(self.settings)

    @cached_property
    def evidence_http(self) -> httpx.Client:
        """Client for evidence downloads from the provider's object store (presigned links)."""
        return httpx.Client(
            timeout=httpx.Timeout(30.0, connect=self.settings.connect_timeout),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
            follow_redirects=False,
        )

    @cached_property
    def results(self) -> ResultStore:
        from worker.records import ResultStore

        return ResultStore(self.redis, self.settings)

    @cached_property
    def deadletters(self) -> DeadLetterStore:
        from worker.deadletter import DeadLetterStore

        return DeadLetterStore(self.redis, self.settings)

    @cached_property
    def leases(self) -> LeaseManager:
        from worker.leases import LeaseManager

        return LeaseManager(self.redis, self.settings)

    def close(self) -> None:
        built = self.__dict__
        if "client" in built:
            built["client"].close()
        if "objects" in built:
            built["objects"].close()
        if "evidence_http" in built:
            built["evidence_http"].close()
        for name in ("limiter_redis", "redis"):
            if name in built:
                built[name].close()


_lock = threading.Lock()
_current: Runtime | None = None


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The process's ``Runtime``; rebuilt after a fork so no socket is shared across processes."""
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid():
            _current = Runtime(settings or load_settings())
        return _current


def close_runtime() -> None:
    global _current
    with _lock:
        if _current is not None and _current.pid == os.getpid():
            _current.close()
        _current = None
