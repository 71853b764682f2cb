"""Start-up probes: what a worker node (and the receiver) checks before taking work.

In ``IDV_MODE=production`` a process refuses to start on a Redis that would lose what is
written (no persistence, or an evicting ``maxmemory-policy``): one line naming why, exit code
``EXIT_MISCONFIGURED``. A worker also probes its S3 store's encryption once: a store that
refuses ``IDV_S3_SSE`` (or does not report it while ``IDV_S3_VERIFY_SSE`` requires it) would
fail every write, so the worker says so and exits; a store that cannot be reached is only
logged (it may come up later).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from celery import signals
from redis import RedisError

from worker.observability import RedisMetrics, get_logger, report_to_sentry
from worker.redisio import connect, redis_target
from worker.settings import Settings, load_settings
from worker.storage import S3ObjectStore, SseOutcome, SseProbe, make_s3_client, probe_encryption
from worker.stores.durability import inspect_durability

EXIT_MISCONFIGURED = 78  # EX_CONFIG (sysexits.h): a supervisor shows it, restarting will not help

log = get_logger("startup")


def check_store_at_start(settings: Settings) -> SseProbe:
    """Probe the S3 store's encryption once (a short-timeout client); record the outcome."""
    client = make_s3_client(
        settings.storage, max_attempts=2, connect_timeout=3.0, read_timeout=10.0
    )
    store = S3ObjectStore(settings.storage, client=client)
    try:
        probe = probe_encryption(store)
    finally:
        store.close()
    metrics_redis = connect(redis_target(settings.redis), fail_fast=True, socket_timeout=2.0)
    try:
        RedisMetrics(metrics_redis, settings.redis.namespace).incr(
            "idv_s3_sse_probe", outcome=probe.outcome.value
        )
    finally:
        metrics_redis.close()
    if probe.ok:
        log.info(probe.line())
    elif probe.outcome is SseOutcome.FAILED:
        log.warning(probe.line())
    else:
        log.error(probe.line())
        report_to_sentry("S3 store misconfigured", code=f"sse.{probe.outcome.value}")
    return probe


def redis_urls(settings: Settings) -> list[str]:
    """The Redis servers this deployment writes to: IDV_REDIS_URL, and a Redis broker."""
    urls = [settings.redis.redis_url]
    broker = settings.broker.broker_url
    if broker and broker.startswith(("redis://", "rediss://", "unix://")) and broker not in urls:
        urls.append(broker)
    return urls


def where(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL, never its credentials."""
    parts = urlsplit(url)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def redis_refusal(settings: Settings) -> str | None:
    """The one line saying why this process must not start on its Redis, or None.

    Only in production mode and only on what the server itself reports: a Redis that cannot be
    reached now is the broker's retry loop's business, not a reason to refuse.
    """
    for url in redis_urls(settings):
        client = connect(url, fail_fast=True, socket_timeout=3.0)
        try:
            problems = inspect_durability(client).problems()
        except RedisError as exc:
            log.warning("redis %s not checked at start: %s", where(url), type(exc).__name__)
            continue
        finally:
            client.close()
        if not problems:
            continue
        line = (
            f"Redis {where(url)} would lose data: {'; '.join(problems)}. Enable AOF "
            "(appendonly yes) and maxmemory-policy noeviction, or set IDV_MODE=development"
        )
        if settings.deployment.mode == "production":
            return line
        log.warning("%s (IDV_MODE=development: starting anyway)", line)
    return None


def refuses_to_start(probe: SseProbe) -> bool:
    """Whether a worker must not start with this probe's finding (every write would fail)."""
    return not probe.ok and probe.outcome is not SseOutcome.FAILED


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    settings: Settings = app.conf.idv_settings if app is not None else load_settings()
    refusal = redis_refusal(settings)
    if refusal is not None:
        log.error("refusing to start: %s", refusal)
        report_to_sentry("Redis would lose data", code="redis.durability")
        logging.shutdown()
        raise SystemExit(EXIT_MISCONFIGURED)
    if refuses_to_start(check_store_at_start(settings)):
        logging.shutdown()
        raise SystemExit(EXIT_MISCONFIGURED)
