"""Celery app factory: queues per lane (``worker.queues``), routes, reliability settings.

A worker started with several queues consumes them in that priority order
(``queue_order_strategy="priority"``); in production run one pool per lane
(see docs/operating/processes.md).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery import Celery, signals
from kombu import Queue

from worker.jobs import start_draining
from worker.observability import configure_logging, init_sentry
from worker.queues import (
    ALL_QUEUES,
    QUEUE_REALTIME,
    ROUTES,
    TASK_ARCHIVE_SWEEP,
    TASK_BATCH_SWEEP,
    TASK_MODULES,
    TASK_RECONCILE,
    TASK_SWEEP_UPLOADS,
)
from worker.redisio import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, RedisTarget, broker_target
from worker.settings import Settings, load_settings

# A cold shutdown (SIGQUIT) lets running tasks go on this long before cancelling them.
SOFT_SHUTDOWN_S = 30.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration, every reliability setting chosen on purpose."""
    broker, ledger = settings.broker, settings.ledger
    visibility_timeout = broker.broker_visibility_timeout_s
    sweep_every = float(settings.storage.s3_upload_sweep_every_s)
    target = broker_target(settings.redis, broker)
    broker_url = sentinel_broker_url(target) if target.sentinels else target.url
    config: dict[str, Any] = {
        "broker_url": broker_url,
        # Results live in our own Redis records; Celery's result backend is not used.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
        # Idempotent tasks: acknowledge after they finish, and give the message back if the
        # worker process dies (SIGKILL, OOM) so another worker completes the work.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        # Long tasks (downloads, limiter waits): never reserve work another worker could start.
        "worker_prefetch_multiplier": 1,
        "worker_max_tasks_per_child": 1000,
        # SIGTERM (Kubernetes scaling in) is a warm shutdown: no new messages, running tasks
        # finish (a chunk hands its rest back after the current row, worker.jobs.draining).
        # SIGQUIT is a cold shutdown: tasks get this long first, then their messages go back.
        "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_S,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "queue_order_strategy": "priority",
            "socket_keepalive": True,
            "health_check_interval": 30,
        },
        "task_queues": [Queue(name) for name in ALL_QUEUES],
        "task_default_queue": QUEUE_REALTIME,
        "task_create_missing_queues": False,
        "task_routes": {pattern: {"queue": queue} for pattern, queue in ROUTES.items()},
        "task_time_limit": broker.task_time_limit_s,
        "task_soft_time_limit": max(1, broker.task_time_limit_s - 30),
        # Periodic work of the one beat process (a second beat is harmless: every sweep takes a
        # fenced lock and claims per transaction).
        "beat_schedule": {
            "reconcile": {
                "task": TASK_RECONCILE,
                "schedule": ledger.reconcile_every_s,
                "options": {"expires": ledger.reconcile_every_s},
            },
            "batch-sweep": {
                "task": TASK_BATCH_SWEEP,
                "schedule": ledger.reconcile_every_s,
                "options": {"expires": ledger.reconcile_every_s},
            },
            "archive-sweep": {
                "task": TASK_ARCHIVE_SWEEP,
                "schedule": ledger.archive_every_s,
                "options": {"expires": ledger.archive_every_s},
            },
            "sweep-stale-uploads": {
                "task": TASK_SWEEP_UPLOADS,
                "schedule": sweep_every,
                # A sweep not started within one period is replaced by the next one.
                "options": {"expires": sweep_every},
            },
        },
    }
    if target.sentinels:
        # kombu's Sentinel transport, with the same restart fix (worker.broker).
        config["broker_transport"] = "worker.broker:SentinelTransport"
        options = config["broker_transport_options"]
        options["master_name"] = target.master
        options["sentinel_kwargs"] = target.sentinel_options(SOCKET_TIMEOUT_S, CONNECT_TIMEOUT_S)
    elif target.scheme in ("redis", "rediss"):
        # kombu's Redis transport, fixed so a worker survives a Redis restart (worker.broker).
        config["broker_transport"] = "worker.broker:Transport"
    if target.uses_tls:
        # The same TLS as every other client (worker.redisio): our transport is not kombu's
        # "rediss" one, so without this kombu would connect in plaintext.
        config["broker_use_ssl"] = target.tls.client_options()
    return config


def sentinel_broker_url(target: RedisTarget) -> str:
    """kombu's form of a Redis behind sentinels: ``sentinel://[auth@]host:port/db;...``, the
    primary's credentials and database (from ``target.url``) on every address."""
    parts = urlsplit(target.url)
    auth = parts.netloc.rpartition("@")[0]
    auth = f"{auth}@" if auth else ""
    db = parts.path.lstrip("/") or "0"
    hosts = (f"[{host}]" if ":" in host else host for host, _ in target.sentinels)
    return ";".join(
        f"sentinel://{auth}{host}:{port}/{db}"
        for host, (_, port) in zip(hosts, target.sentinels, strict=True)
    )


def create_app(settings: Settings | None = None) -> Celery:
    """Build the Celery app; ``settings`` default to the environment (read once)."""
    settings = settings or load_settings()
    app = Celery("idv")
    app.conf.update(celery_config(settings))
    app.conf.idv_settings = settings
    if TASK_MODULES:
        app.conf.imports = TASK_MODULES
    return app


@signals.worker_init.connect
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    settings: Settings = sender.app.conf.idv_settings if sender is not None else load_settings()
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    init_sentry(settings.observability)


@signals.worker_shutting_down.connect
def _on_worker_shutting_down(**_: Any) -> None:
    """Tell this node's pool processes (worker.jobs.draining): chunks hand their rest back."""
    start_draining()


@signals.beat_init.connect
def _on_beat_init(sender: Any = None, **_: Any) -> None:
    """Beat starts the reconciler once at start, not one period later: overdue work is
    re-driven right after a restart, and ``doctor`` sees beat within seconds of its start."""
    if sender is None:
        return
    every = sender.app.conf.idv_settings.ledger.reconcile_every_s
    sender.app.send_task(TASK_RECONCILE, expires=every)


def _default_app() -> Celery:
    # ``celery -A worker.app`` needs a module-level app; it is built lazily from the
    # environment when Celery asks for it, not when this module is imported by tools.
    return create_app()


_lazy: dict[str, Celery] = {}


def __getattr__(name: str) -> Any:
    if name in {"app", "celery"}:
        if "app" not in _lazy:
            _lazy["app"] = _default_app()
        return _lazy["app"]
    raise AttributeError(name)
