"""The worker node's builder: every service a Celery worker process runs tasks with.

Built once per worker process, by its first task (after the fork, so no socket is shared with
the parent; ``worker_process_init`` forgets any node inherited through a fork), and closed on
``worker_process_shutdown`` through one exit stack. The node is this process's one explicit
holder (``set_node``/``current_node``), as dramatiq's ``set_broker``.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, current_app, signals
from redis import Redis

from worker.batch import BatchControl, BatchService, BatchStore
from worker.events.delivery import EventDelivery, OutboxDriver
from worker.evidence import UploadSweeper
from worker.jobs import WorkSender
from worker.ledger import Ledger, Reconciler
from worker.observability import RedisMetrics
from worker.onboarding import OnboardingService
from worker.settings import Settings
from worker.stores import DeadLetterStore, Heartbeat, ResultStore
from worker.webhook import WebhookSender
from worker.wiring import blocks, services
from worker.wiring.room import LaneRoom, consumed_queues, latency_lanes_beside_bulk
from worker.wiring.takeover import build_heartbeat, start_heartbeat

log = logging.getLogger("idv.wiring")


@dataclass(frozen=True)
class WorkerNode:
    """The services of one worker process (see the module docstring)."""

    settings: Settings
    metrics: RedisMetrics
    sender: WorkSender
    results: ResultStore
    deadletters: DeadLetterStore
    ledger: Ledger
    onboarding: OnboardingService
    reconciler: Reconciler
    batch_store: BatchStore
    batch_service: BatchService
    batch_control: BatchControl
    upload_sweeper: UploadSweeper
    webhook_sender: WebhookSender | None
    heartbeat: Heartbeat
    stack: ExitStack = field(repr=False, compare=False)
    pid: int = field(default_factory=os.getpid)
    delivery: EventDelivery | None = None
    """Attempts the outbox's events (None when no webhook is configured)."""

    def close(self) -> None:
        """Close every client the node opened (safe to call twice)."""
        self.stack.close()


def build_worker_node(settings: Settings, app: Celery, *, redis: Redis | None = None) -> WorkerNode:
    """Every service a worker process needs, closed together by ``WorkerNode.close``."""
    stack = ExitStack()
    try:
        core = blocks.build_core(settings, stack, redis=redis)
        limiter = blocks.build_limiter(core, stack)
        client = blocks.build_client(core, limiter, stack)
        objects = blocks.build_objects(core, stack)
        http = blocks.build_evidence_http(core, stack)
        sender = blocks.build_sender(core, app, stack)
        results = blocks.build_results(core)
        deadletters = blocks.build_deadletters(core)
        ledger = blocks.build_ledger(core)
        batch_store = services.build_batch_store(core)
        heartbeat = build_heartbeat(core, stack)
        onboarding = services.build_onboarding(
            core,
            client=client,
            objects=objects,
            http=http,
            results=results,
            deadletters=deadletters,
            ledger=ledger,
            sender=sender,
            heartbeat=heartbeat,
        )
        reconciler = services.build_reconciler(core, ledger, sender)
        webhook_sender = services.build_webhook_sender(core, stack)
        delivery = None
        if sender.outbox is not None:
            delivery = EventDelivery(
                sender.outbox, webhook_sender, deadletters, settings.webhooks, core.metrics
            )
            driver = OutboxDriver(
                sender.outbox,
                sender.send_event,
                core.metrics,
                hint_s=settings.webhooks.webhook_claim_s,
            )
            heartbeat.every_beat(driver.tick)
        batch_control = services.build_batch_control(
            core, batch_store, sender, results=results, objects=objects
        )
        node = WorkerNode(
            settings=settings,
            metrics=core.metrics,
            sender=sender,
            results=results,
            deadletters=deadletters,
            ledger=ledger,
            onboarding=onboarding,
            reconciler=reconciler,
            batch_store=batch_store,
            batch_service=services.build_batch_service(
                core,
                stack,
                store=batch_store,
                limiter=limiter,
                results=results,
                objects=objects,
                sender=sender,
                heartbeat=heartbeat,
            ),
            batch_control=batch_control,
            upload_sweeper=services.build_upload_sweeper(core, objects),
            webhook_sender=webhook_sender,
            heartbeat=heartbeat,
            stack=stack,
            delivery=delivery,
        )
        lanes = latency_lanes_beside_bulk(consumed_queues(app))
        if lanes and sender.broker is not None:
            room = LaneRoom(
                sender.broker,
                core.redis,
                core.keys.namespace,
                lanes,
                node.batch_service,
                hold_s=heartbeat.every_s,
            )
            heartbeat.every_beat(room.tick)
        start_heartbeat(
            core,
            heartbeat,
            control=batch_control,
            reconciler=reconciler,
            batch_service=node.batch_service,
        )
        return node
    except BaseException:
        stack.close()
        raise


_lock = threading.Lock()
_node: WorkerNode | None = None


def set_node(node: WorkerNode | None) -> WorkerNode | None:
    """Make ``node`` this process's node (closing the one it replaces); returns it."""
    global _node
    with _lock:
        old, _node = _node, node
    if old is not None and old is not node and old.pid == os.getpid():
        old.close()
    return node


def current_node(app: Celery) -> WorkerNode:
    """This process's node: the one set at process start, else built now from ``app``'s
    settings (a solo or threaded pool, which never forks)."""
    node = _node
    if node is not None and node.pid == os.getpid():
        return node
    with _lock:
        if _node is not None and _node.pid == os.getpid():
            return _node
    built = build_worker_node(app.conf.idv_settings, app)
    set_node(built)
    return built


@signals.worker_process_init.connect
def _on_process_init(sender: Any = None, **_: Any) -> None:
    # A forked child must not reuse the parent's sockets: forget any inherited node.
    global _node
    with _lock:
        _node = None
    # Built now rather than by the first task: the node's heartbeat renews leases and takes
    # over a dead worker's work, and an idle process must do that too.
    app = getattr(sender, "app", None) or current_app
    if getattr(app.conf, "idv_settings", None) is None:
        return
    try:
        current_node(app)
    except Exception:  # Redis not reachable yet: the first task builds it
        log.warning("worker node not built at process start", exc_info=True)


@signals.worker_process_shutdown.connect
def _on_process_shutdown(**_: Any) -> None:
    set_node(None)
