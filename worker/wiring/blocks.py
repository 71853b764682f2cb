"""The building blocks every process builder composes: each takes the settings part(s) it reads
and registers what it opens on the caller's exit stack, so one ``close()`` closes everything."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass

import httpx
from celery import Celery
from redis import Redis

from worker.cloudauth import DEFAULT_QUOTAS
from worker.cloudauth.client import CloudAuthClient
from worker.jobs import CelerySender
from worker.jobs.outbox import Outbox
from worker.keys import ObjectKeys, RedisKeys
from worker.ledger import Ledger
from worker.observability import RedisMetrics, report_to_sentry
from worker.ratelimit import QuotaTable, RedisRateLimiter, limiter_redis
from worker.redisio import broker_target, connect, redis_target
from worker.settings import Settings
from worker.storage import S3ObjectStore
from worker.stores import DeadLetterStore, Pseudonyms, ResultStore, SubjectIndex, UploadRegistry
from worker.stores.replication import ReplicaWait


@dataclass(frozen=True)
class Core:
    """What every process of this deployment shares: its Redis, key schemas, metrics, quotas."""

    settings: Settings
    redis: Redis
    keys: RedisKeys
    object_keys: ObjectKeys
    metrics: RedisMetrics
    quotas: QuotaTable


def build_core(settings: Settings, stack: ExitStack, *, redis: Redis | None = None) -> Core:
    """The shared core; ``redis`` (kept open) replaces the client built from the settings."""
    if redis is None:
        redis = connect(redis_target(settings.redis))
        stack.callback(redis.close)
    return Core(
        settings=settings,
        redis=redis,
        keys=RedisKeys(settings.redis.namespace),
        object_keys=ObjectKeys(settings.storage.s3_prefix),
        metrics=RedisMetrics(redis, settings.redis.namespace),
        quotas=QuotaTable(settings.quotas, DEFAULT_QUOTAS),
    )


def build_limiter(core: Core, stack: ExitStack) -> RedisRateLimiter:
    """The global limiter on its own client (short timeouts: it fails closed at once)."""
    client = limiter_redis(core.settings.redis)
    stack.callback(client.close)
    return RedisRateLimiter(
        client, core.quotas, namespace=core.settings.redis.namespace, metrics=core.metrics
    )


def build_client(core: Core, limiter: RedisRateLimiter, stack: ExitStack) -> CloudAuthClient:
    """The provider client; every call passes ``limiter``."""
    client = CloudAuthClient(core.settings.provider, gate=limiter)
    stack.callback(client.close)
    return client


def build_objects(core: Core, stack: ExitStack) -> S3ObjectStore:
    """The S3 store, telling the upload registry of every multipart upload."""
    registry = UploadRegistry(core.redis, core.keys)
    store = S3ObjectStore(core.settings.storage, tracker=registry)
    stack.callback(store.close)
    return store


def build_evidence_http(core: Core, stack: ExitStack) -> httpx.Client:
    """The client of evidence downloads from the provider's object store (presigned links)."""
    client = httpx.Client(
        timeout=httpx.Timeout(30.0, connect=core.settings.provider.connect_timeout),
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
        follow_redirects=False,
    )
    stack.callback(client.close)
    return client


def build_outbox(core: Core) -> Outbox:
    """The outbox every outbound event is written to before any message about it."""
    s = core.settings.webhooks
    return Outbox(core.redis, core.keys, lease_s=s.webhook_claim_s, keep_s=s.webhook_keep_s)


def build_sender(core: Core, app: Celery, stack: ExitStack) -> CelerySender:
    """The one ``WorkSender``; reads the archival backlog on the broker's Redis, and sends
    events only when a webhook is configured (through the outbox)."""
    webhooks = core.settings.webhooks.enabled
    outbox = build_outbox(core) if webhooks else None
    target = broker_target(core.settings.redis, core.settings.broker)
    if target == redis_target(core.settings.redis):
        return CelerySender(app, core.redis, webhooks=webhooks, outbox=outbox)
    url = target.url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return CelerySender(app, webhooks=webhooks, outbox=outbox)
    broker = connect(target)
    stack.callback(broker.close)
    return CelerySender(app, broker, webhooks=webhooks, outbox=outbox)


def build_ledger(core: Core) -> Ledger:
    """The transaction ledger; every move to ``expired`` is counted and reported."""
    s = core.settings
    return Ledger(
        core.redis,
        core.keys,
        s.ledger,
        evidence_window_s=s.onboarding.evidence_window_s,
        require_known=s.callbacks.callback_require_known,
        metrics=core.metrics,
        report=report,
        replicas=ReplicaWait.from_settings(s.redis),
    )


def build_results(core: Core) -> ResultStore:
    return ResultStore(core.redis, core.keys, core.settings.results)


def build_deadletters(core: Core) -> DeadLetterStore:
    return DeadLetterStore(core.redis, core.keys)


def build_subjects(core: Core) -> SubjectIndex:
    s = core.settings
    return SubjectIndex(
        core.redis,
        core.keys,
        ttl_s=max(s.results.result_ttl_s, s.batch.batch_ttl_s),
        pseudonyms=Pseudonyms.from_settings(
            s.subjects, production=s.deployment.mode == "production"
        ),
    )


def report(message: str, **tags: str) -> None:
    """How services report a condition an operator must see (Sentry, when configured)."""
    report_to_sentry(message, **tags)
