"""Start-up probes: what a worker node, beat (and the receiver) check before taking work.

In ``IDV_MODE=production`` a process refuses to start on a Redis reached without TLS or without
authentication (``connection_refusal``; ``IDV_REDIS_ALLOW_INSECURE=true`` starts anyway, with a
warning at every start), or on a Redis that would lose what is written (no persistence, or an
evicting ``maxmemory-policy``): one line naming why, exit code ``EXIT_MISCONFIGURED``.
A worker also probes its S3 store's encryption once: a store that
refuses ``IDV_S3_SSE`` (or does not report it while ``IDV_S3_VERIFY_SSE`` requires it) would
fail every write, so the worker says so and exits; a store that cannot be reached is only
logged (it may come up later).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from redis import RedisError

from worker.observability import RedisMetrics, get_logger, report_to_sentry
from worker.redisio import RedisTarget, broker_target, connect, redis_target
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


def redis_targets(settings: Settings) -> list[RedisTarget]:
    """The Redis servers this deployment writes to: IDV_REDIS_URL, and a Redis broker."""
    store = redis_target(settings.redis)
    targets = [store]
    broker = broker_target(settings.redis, settings.broker)
    if broker != store and broker.scheme in ("redis", "rediss", "unix"):
        targets.append(broker)
    return targets


def redis_urls(settings: Settings) -> list[str]:
    """The URLs of ``redis_targets``."""
    return [target.url for target in redis_targets(settings)]


def where(url: str) -> str:
    """``host:port`` (or the socket path) of a Redis URL, never its credentials."""
    return RedisTarget(url).where()


def connection_refusal(settings: Settings) -> str | None:
    """The one line saying why this process must not start on how it reaches Redis, or None.

    Production mode only: every Redis (and its sentinels) must be reached over TLS with a
    checked certificate and with authentication, unless ``IDV_REDIS_ALLOW_INSECURE=true``
    (then a warning, at every start). Read from the settings alone, before any connection.
    """
    weak = []
    for target in redis_targets(settings):
        variable = "IDV_REDIS_URL" if target.url == settings.redis.redis_url else "IDV_BROKER_URL"
        if target.weaknesses():
            weak.append(f"{target.where()} ({variable}): {', '.join(target.weaknesses())}")
    if not weak or settings.deployment.mode != "production":
        return None
    line = f"Redis reached insecurely: {'; '.join(weak)}"
    if settings.redis.redis_allow_insecure:
        log.warning("IDV_REDIS_ALLOW_INSECURE=true: starting anyway. %s", line)
        return None
    return (
        f"{line}. Use rediss:// with a password (IDV_REDIS_TLS_* for the CA and client "
        "certificate), or set IDV_REDIS_ALLOW_INSECURE=true"
    )


def redis_refusal(settings: Settings) -> str | None:
    """The one line saying why this process must not start on its Redis, or None.

    Only in production mode: first how Redis is reached (``connection_refusal``), then what the
    server itself reports: a Redis that cannot be reached now is the broker's retry loop's
    business, not a reason to refuse.
    """
    refusal = connection_refusal(settings)
    if refusal is not None:
        return refusal
    for target in redis_targets(settings):
        client = connect(target, fail_fast=True, socket_timeout=3.0)
        try:
            problems = inspect_durability(client).problems()
        except RedisError as exc:
            log.warning("redis %s not checked at start: %s", target.where(), type(exc).__name__)
            continue
        finally:
            client.close()
        if not problems:
            continue
        line = (
            f"Redis {target.where()} would lose data: {'; '.join(problems)}. Enable AOF "
            "(appendonly yes) and maxmemory-policy noeviction, or set IDV_MODE=development"
        )
        if settings.deployment.mode == "production":
            return line
        log.warning("%s (IDV_MODE=development: starting anyway)", line)
    return None


def refuses_to_start(probe: SseProbe) -> bool:
    """Whether a worker must not start with this probe's finding (every write would fail)."""
    return not probe.ok and probe.outcome is not SseOutcome.FAILED


def _refuse_on_redis(settings: Settings) -> None:
    refusal = redis_refusal(settings)
    if refusal is not None:
        log.error("refusing to start: %s", refusal)
        report_to_sentry("Redis refused at start", code="redis.refused")
        logging.shutdown()
        raise SystemExit(EXIT_MISCONFIGURED)


@signals.beat_init.connect
def _on_beat_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    _refuse_on_redis(app.conf.idv_settings if app is not None else load_settings())


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    settings: Settings = app.conf.idv_settings if app is not None else load_settings()
    _refuse_on_redis(settings)
    if refuses_to_start(check_store_at_start(settings)):
        logging.shutdown()
        raise SystemExit(EXIT_MISCONFIGURED)
