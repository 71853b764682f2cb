"""The receiver's builder: the callback intake on its own Redis pool and Celery app."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field

from celery import Celery
from redis import Redis

from worker.app import create_app
from worker.observability import MetricsExporter, RedisMetrics
from worker.onboarding import CallbackIntake
from worker.queues import ALL_QUEUES
from worker.redisio import broker_target, connect, redis_target
from worker.settings import Settings
from worker.wiring import blocks, services
from worker.wiring.demand import DemandSource


@dataclass(frozen=True)
class ReceiverParts:
    """What a receiver process serves callbacks (and, when configured, metrics) with."""

    settings: Settings
    redis: Redis
    app: Celery
    intake: CallbackIntake
    metrics: RedisMetrics
    stack: ExitStack = field(repr=False, compare=False)

    def exporter(self, client: Redis | None = None) -> MetricsExporter:
        """The metrics page, closed with the parts (``client``: see ``build_exporter``)."""
        exporter = build_exporter(self.settings, client=client)
        self.stack.callback(exporter.close)
        return exporter

    def close(self) -> None:
        self.stack.close()


def build_exporter(settings: Settings, *, client: Redis | None = None) -> MetricsExporter:
    """The metrics of the whole system and the lane queues, on a client with
    ``IDV_METRICS_TIMEOUT_S`` (``client``, kept open, replaces it); close it after use."""
    target = broker_target(settings.redis, settings.broker)
    exporter = MetricsExporter(
        settings.observability,
        store=redis_target(settings.redis),
        namespace=settings.redis.namespace,
        broker=target if target.url.startswith(("redis", "unix")) else target.url,
        queues=ALL_QUEUES,
        buckets=known_buckets(settings),
        client=client,
    )
    exporter.add_source(
        DemandSource(settings, store=exporter.store_client, broker=exporter.broker_client)
    )
    return exporter


def known_buckets(settings: Settings) -> tuple[str, ...]:
    """The limiter buckets the flows use (shown at 0 before their first call)."""
    product = settings.onboarding.onboarding_product
    return (
        f"{product}:Initialize",
        f"{product}:CheckResult",
        f"{settings.batch.batch_product_code}:DocOcrV2",
    )


def build_receiver(
    settings: Settings,
    *,
    threads: int = 4,
    redis: Redis | None = None,
    app: Celery | None = None,
) -> ReceiverParts:
    """The intake with short Redis timeouts (the provider is answered within seconds)."""
    stack = ExitStack()
    try:
        if redis is None:
            redis = connect(
                redis_target(settings.redis),
                socket_timeout=2.0,
                max_connections=max(8, threads * 2),
            )
            stack.callback(redis.close)
        if app is None:
            app = create_app(settings)
            stack.callback(app.close)
        core = blocks.build_core(settings, stack, redis=redis)
        sender = blocks.build_sender(core, app, stack)
        intake = services.build_intake(core, blocks.build_ledger(core), sender)
        return ReceiverParts(settings, redis, app, intake, core.metrics, stack)
    except BaseException:
        stack.close()
        raise
