"""The one composition root: a process's adapters *and* services, built from one ``Settings``.

Tasks, the receiver and the CLI ask the ``Runtime`` for a service (``runtime.onboarding``,
``runtime.intake``, ``runtime.batch_service`` ...); nothing else keeps per-process objects.
Everything is built lazily on first use, nothing at import time. A Celery worker process builds
its runtime from the settings its app was created with (read once, by ``create_app``), drops
any runtime inherited through a fork (``worker_process_init``) and closes it on
``worker_process_shutdown``.

A worker node checks its S3 store once at start (``worker_init``, before any pool process or
task): one probe object with ``IDV_S3_SSE``. A store that refuses the encryption, or does not
report it while ``IDV_S3_VERIFY_SSE`` requires it, would fail every write: the worker logs one
line naming the variable to change and exits (code ``EXIT_MISCONFIGURED``) instead of taking
work it cannot finish. A store that cannot be reached is only logged (it may come up later).

Before that, in ``IDV_MODE=production``, it checks that Redis (``IDV_REDIS_URL`` and the broker,
when that is another Redis) keeps what is written (``redis_refusal``): no persistence, or an
evicting ``maxmemory-policy``, would lose the ledger, batches and queued work on a restart or
when memory fills; the worker (and the receiver) says why in one line and exits with
``EXIT_MISCONFIGURED``. ``IDV_MODE=development`` only logs a warning.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import httpx
from celery import signals
from redis import Redis

from worker.observability import RedisMetrics, get_logger, report_to_sentry
from worker.redisio import broker_target, connect, redis_target
from worker.settings import Settings, load_settings

if TYPE_CHECKING:
    from celery import Celery

    from worker.batch import BatchControl, BatchService, BatchStore, CeleryEnqueuer
    from worker.cloudauth.client import CloudAuthClient
    from worker.erasure import Eraser
    from worker.evidence import EvidenceArchiver, UploadSweeper
    from worker.keys import ObjectKeys
    from worker.ledger import FlowStarter, Ledger, Reconciler
    from worker.onboarding import CallbackIntake, OnboardingService
    from worker.ratelimit import RedisRateLimiter
    from worker.storage import S3ObjectStore, SseProbe
    from worker.stores import (
        DeadLetterStore,
        LeaseManager,
        ResultStore,
        SubjectIndex,
        UploadRegistry,
    )
    from worker.webhook import WebhookSender


class Runtime:
    """The adapters and services of one process, created on first use and closed together.

    ``app`` is the Celery app work is sent with (default: one built from ``settings``);
    ``redis_client`` an already built client to use instead of the runtime's own.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        app: Celery | None = None,
        redis_client: Redis | None = None,
    ) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self._app = app
        self._owns_app = app is None
        self._redis = redis_client

    # ------------------------------------------------------------------ adapters

    @cached_property
    def app(self) -> Celery:
        """The Celery app work is sent with."""
        if self._app is None:
            from worker.app import create_app

            self._app = create_app(self.settings)
        return self._app

    @cached_property
    def redis(self) -> Redis:
        return self._redis or connect(redis_target(self.settings))

    @cached_property
    def metrics(self) -> RedisMetrics:
        return RedisMetrics(self.redis, self.settings.namespace)

    @cached_property
    def limiter_redis(self) -> Redis:
        """The limiter's own client: short timeouts, one retry, so it fails closed at once."""
        return connect(redis_target(self.settings), fail_fast=True, socket_timeout=2.0)

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

        return S3ObjectStore(self.settings, tracker=self.upload_registry)

    @cached_property
    def upload_registry(self) -> UploadRegistry:
        """The multipart uploads started and not ended (what the stale-upload sweep aborts)."""
        from worker.stores import UploadRegistry

        return UploadRegistry(self.redis, self.settings)

    @cached_property
    def object_keys(self) -> ObjectKeys:
        from worker.keys import ObjectKeys

        return ObjectKeys.from_settings(self.settings)

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
        from worker.stores import ResultStore

        return ResultStore(self.redis, self.settings)

    @cached_property
    def deadletters(self) -> DeadLetterStore:
        from worker.stores import DeadLetterStore

        return DeadLetterStore(self.redis, self.settings)

    @cached_property
    def leases(self) -> LeaseManager:
        from worker.stores import LeaseManager

        return LeaseManager(self.redis, self.settings)

    # ------------------------------------------------------------------ services

    @cached_property
    def archiver(self) -> EvidenceArchiver:
        from worker.evidence import EvidenceArchiver

        settings = self.settings
        return EvidenceArchiver(
            self.objects,
            self.evidence_http,
            self.object_keys,
            part_size=settings.evidence_part_size,
            chunk_size=settings.evidence_chunk_size,
            max_links=settings.evidence_max_links,
            metrics=self.metrics,
            heartbeat_every_s=settings.onboarding_lease_s / 4,
        )

    @cached_property
    def upload_sweeper(self) -> UploadSweeper:
        from worker.evidence import UploadSweeper

        return UploadSweeper(
            self.objects,
            self.upload_registry,
            older_than_s=self.settings.s3_stale_upload_age_s,
            metrics=self.metrics,
        )

    @cached_property
    def onboarding(self) -> OnboardingService:
        from worker.notices import CeleryNotifier
        from worker.onboarding import OnboardingService

        return OnboardingService(
            client=self.client,
            archiver=self.archiver,
            objects=self.objects,
            keys=self.object_keys,
            records=self.results,
            leases=self.leases,
            deadletters=self.deadletters,
            metrics=self.metrics,
            report=_report,
            lease_s=self.settings.onboarding_lease_s,
            progress=self.ledger,
            hold_s=max(self.settings.reconcile_after_s, 2 * self.settings.onboarding_lease_s),
            notifier=CeleryNotifier(self.app),
        )

    @cached_property
    def ledger(self) -> Ledger:
        from worker.ledger import Ledger

        return Ledger(self.redis, self.settings)

    @cached_property
    def broker_redis(self) -> Redis:
        """The broker's Redis (``IDV_BROKER_URL``, else ``IDV_REDIS_URL``)."""
        target = broker_target(self.settings)
        return self.redis if target == redis_target(self.settings) else connect(target)

    @cached_property
    def flow_starter(self) -> FlowStarter:
        from worker.ledger import FlowStarter
        from worker.onboarding import derive_callback_token

        tokens = [t.get_secret_value() for t in self.settings.callback_tokens]
        secret = self.settings.callback_token_secret

        def token_for(merchant_biz_id: str) -> str | None:
            # A token good for this flow only, when a secret is set; else the static one.
            if secret is not None and secret.get_secret_value():
                return derive_callback_token(secret.get_secret_value(), merchant_biz_id)
            return tokens[0] if tokens else None

        return FlowStarter(
            self.client,
            self.ledger,
            callback_url=self.settings.callback_url,
            token_for=token_for,
            subjects=self.subjects,
        )

    @cached_property
    def reconciler(self) -> Reconciler:
        from worker.ledger import CeleryDispatcher, Reconciler

        return Reconciler(
            self.ledger,
            CeleryDispatcher(self.app, self.broker_redis),
            self.settings,
            metrics=self.metrics,
            report=_report,
        )

    @cached_property
    def intake(self) -> CallbackIntake:
        from worker.onboarding import CallbackIntake

        return CallbackIntake(
            self.settings, self.redis, self.app, metrics=self.metrics, ledger=self.ledger
        )

    @cached_property
    def webhook_sender(self) -> WebhookSender | None:
        """The result webhook's sender (None when none is configured)."""
        from worker.webhook import WebhookSender

        return WebhookSender.from_settings(self.settings)

    @cached_property
    def enqueuer(self) -> CeleryEnqueuer:
        from worker.batch import CeleryEnqueuer

        return CeleryEnqueuer(self.app)

    @cached_property
    def batch_store(self) -> BatchStore:
        from worker.batch import BatchStore

        return BatchStore(self.redis, self.settings)

    @cached_property
    def batch_client(self) -> CloudAuthClient:
        """The batch flow's provider client: its transport claims items as requests leave."""
        from worker.batch import batch_client

        return batch_client(self.settings, self.limiter)

    @cached_property
    def batch_service(self) -> BatchService:
        from worker.batch import BatchService, ImageReader, SourcePolicy

        reader = ImageReader(
            policy=SourcePolicy.from_settings(self.settings),
            s3_client=lambda: self.objects.client,
            timeout=self.settings.read_timeout,
        )
        return BatchService(
            store=self.batch_store,
            client=self.batch_client,
            reader=reader,
            results=self.results,
            objects=self.objects,
            enqueuer=self.enqueuer,
            settings=self.settings,
            metrics=self.metrics,
        )

    @cached_property
    def batch_control(self) -> BatchControl:
        from worker.batch import BatchControl

        return BatchControl(
            self.batch_store,
            self.enqueuer,
            self.settings,
            results=self.results,
            objects=self.objects,
            metrics=self.metrics,
        )

    @cached_property
    def subjects(self) -> SubjectIndex:
        from worker.stores import SubjectIndex

        return SubjectIndex(self.redis, self.settings)

    @cached_property
    def eraser(self) -> Eraser:
        """Erasure on request, the ledger's entries included."""
        from worker.erasure import Eraser

        return Eraser(
            redis_client=self.redis,
            settings=self.settings,
            objects=self.objects,
            results=self.results,
            deadletters=self.deadletters,
            batches=self.batch_store,
            subjects=self.subjects,
            ledger_eraser=lambda _kind, tid: int(self.ledger.delete(tid)),
        )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close what this runtime built (connections, pools); safe to call twice."""
        built: dict[str, Any] = self.__dict__
        if "batch_service" in built:
            built["batch_service"].reader.close()
        for name in ("batch_client", "client", "webhook_sender", "objects", "evidence_http"):
            obj = built.pop(name, None)
            if obj is not None:
                obj.close()
        if self._owns_app and "app" in built:
            built["app"].close()
        broker = built.pop("broker_redis", None)
        if broker is not None and broker is not built.get("redis"):
            broker.close()
        for name in ("limiter_redis", "redis"):
            client = built.pop(name, None)
            if client is not None and (name != "redis" or self._redis is None):
                client.close()
        for name in list(built):
            if not name.startswith("_") and name not in ("settings", "pid"):
                built.pop(name, None)


def _report(message: str, **tags: str) -> None:
    report_to_sentry(message, **tags)


_lock = threading.Lock()
_current: Runtime | None = None


def get_runtime(app: Celery | None = None) -> Runtime:
    """This process's ``Runtime``: rebuilt after a fork, or for a different Celery app.

    A worker passes its app (whose settings were read once, by ``create_app``); tools without
    an app get a runtime on settings read from the environment.
    """
    global _current
    with _lock:
        current = _current
        stale = current is None or current.pid != os.getpid()
        if not stale and app is not None and current is not None and current._app is not app:
            stale = True
        if stale:
            if current is not None and current.pid == os.getpid():
                current.close()
            settings = app.conf.idv_settings if app is not None else load_settings()
            _current = Runtime(settings, app=app)
        assert _current is not None
        return _current


def close_runtime() -> None:
    """Close and forget this process's runtime (worker process shutdown)."""
    global _current
    with _lock:
        if _current is not None and _current.pid == os.getpid():
            _current.close()
        _current = None


@signals.worker_process_init.connect
def _on_process_init(**_: Any) -> None:
    # A forked child must not reuse the parent's sockets: drop any inherited runtime.
    global _current
    with _lock:
        _current = None


@signals.worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    close_runtime()


EXIT_MISCONFIGURED = 78  # EX_CONFIG (sysexits.h): a supervisor shows it, restarting will not help

_startup_log = get_logger("startup")


def check_store_at_start(settings: Settings) -> SseProbe:
    """Probe the S3 store's encryption once (a short-timeout client); record the outcome."""
    from worker.storage import S3ObjectStore, SseOutcome, make_s3_client, probe_encryption

    client = make_s3_client(settings, max_attempts=2, connect_timeout=3.0, read_timeout=10.0)
    store = S3ObjectStore(settings, client=client)
    try:
        probe = probe_encryption(store)
    finally:
        store.close()
    metrics_redis = connect(redis_target(settings), fail_fast=True, socket_timeout=2.0)
    try:
        RedisMetrics(metrics_redis, settings.namespace).incr(
            "idv_s3_sse_probe", outcome=probe.outcome.value
        )
    finally:
        metrics_redis.close()
    if probe.ok:
        _startup_log.info(probe.line())
    elif probe.outcome is SseOutcome.FAILED:
        _startup_log.warning(probe.line())
    else:
        _startup_log.error(probe.line())
        report_to_sentry("S3 store misconfigured", code=f"sse.{probe.outcome.value}")
    return probe


def redis_urls(settings: Settings) -> list[str]:
    """The Redis servers this deployment writes to: IDV_REDIS_URL, and a Redis broker."""
    urls = [settings.redis_url]
    broker = settings.broker_url
    if broker and broker.startswith(("redis://", "rediss://", "unix://")) and broker not in urls:
        urls.append(broker)
    return urls


def _where(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def redis_refusal(settings: Settings) -> str | None:
    """The one line saying why this process must not start on its Redis, or None.

    Only in production mode and only on what the server itself reports: a Redis that cannot be
    reached now is the broker's retry loop's business, not a reason to refuse.
    """
    from redis import RedisError

    from worker.stores.durability import inspect_durability

    for url in redis_urls(settings):
        client = connect(url, fail_fast=True, socket_timeout=3.0)
        try:
            problems = inspect_durability(client).problems()
        except RedisError as exc:
            _startup_log.warning(
                "redis %s not checked at start: %s", _where(url), type(exc).__name__
            )
            continue
        finally:
            client.close()
        if not problems:
            continue
        line = (
            f"Redis {_where(url)} would lose data: {'; '.join(problems)}. Enable AOF "
            "(appendonly yes) and maxmemory-policy noeviction, or set IDV_MODE=development"
        )
        if settings.mode == "production":
            return line
        _startup_log.warning("%s (IDV_MODE=development: starting anyway)", line)
    return None


def refuses_to_start(probe: SseProbe) -> bool:
    """Whether a worker must not start with this probe's finding (every write would fail)."""
    from worker.storage import SseOutcome

    return not probe.ok and probe.outcome is not SseOutcome.FAILED


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    settings: Settings = app.conf.idv_settings if app is not None else load_settings()
    refusal = redis_refusal(settings)
    if refusal is not None:
        _startup_log.error("refusing to start: %s", refusal)
        report_to_sentry("Redis would lose data", code="redis.durability")
        logging.shutdown()
        raise SystemExit(EXIT_MISCONFIGURED)
    if refuses_to_start(check_store_at_start(settings)):
        logging.shutdown()
        raise SystemExit(EXIT_MISCONFIGURED)
