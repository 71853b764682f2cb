"""The heartbeat of a worker process: what it renews, and who re-drives what came due."""

from __future__ import annotations

from contextlib import ExitStack

from worker.batch import BatchControl, BatchService
from worker.batch.takeover import BatchTakeover
from worker.jobs import KIND_ONBOARDING
from worker.ledger import Reconciler
from worker.observability import get_logger
from worker.stores import DueIndex, Heartbeat, LeaseManager, lease_member
from worker.wiring.blocks import Core

log = get_logger("takeover")


def build_heartbeat(core: Core, stack: ExitStack) -> Heartbeat:
    """The process's heartbeat (not started yet: ``start_heartbeat`` once handlers are on)."""
    heartbeat = Heartbeat(
        DueIndex(core.redis, core.keys), every_s=core.settings.ledger.heartbeat_every_s
    )
    stack.callback(heartbeat.stop)
    return heartbeat


def start_heartbeat(
    core: Core,
    heartbeat: Heartbeat,
    *,
    control: BatchControl,
    reconciler: Reconciler,
    batch_service: BatchService | None = None,
) -> None:
    """Register the re-drive of every kind of entry, then start the thread. ``batch_service``
    adopts chunks whose holder died, between two rows of the chunk it runs."""
    BatchTakeover(control, heartbeat.index, adopter=batch_service).register(heartbeat)
    if batch_service is not None:
        heartbeat.every_beat(batch_service.adopt_offered)
    leases = LeaseManager(core.redis, core.keys)

    def lease(rest: str) -> None:
        kind, _, ref = rest.partition(":")
        if leases.is_held(kind, ref):
            return  # a live holder: its heartbeat moves the entry on
        if kind == KIND_ONBOARDING:
            outcome = reconciler.take_over(ref)
            log.info("transaction %s taken over: %s", ref, outcome)
        heartbeat.index.drop(lease_member(kind, ref))

    heartbeat.on("lease", lease)
    heartbeat.start()
