"""Wiring: one builder per process kind, each building what that process needs from the
settings parts and closing all of it through one exit stack.

* worker node — ``build_worker_node`` / ``current_node`` (``worker.wiring.node``)
* receiver    — ``build_receiver`` (``worker.wiring.receiver``)
* beat        — the Celery app alone (``worker.app.create_app``): its sweeps run on workers
* CLI command — ``Cli`` (``worker.wiring.cli``)
Start-up probes live in ``worker.wiring.startup``.
"""

from __future__ import annotations

from worker.wiring.blocks import Core, build_core
from worker.wiring.cli import Cli
from worker.wiring.node import WorkerNode, build_worker_node, current_node, set_node
from worker.wiring.receiver import ReceiverParts, build_exporter, build_receiver
from worker.wiring.startup import (
    EXIT_MISCONFIGURED,
    check_store_at_start,
    connection_refusal,
    redis_refusal,
    redis_targets,
    redis_urls,
    refuses_to_start,
)

__all__ = [
    "EXIT_MISCONFIGURED",
    "Cli",
    "Core",
    "ReceiverParts",
    "WorkerNode",
    "build_core",
    "build_exporter",
    "build_receiver",
    "build_worker_node",
    "check_store_at_start",
    "connection_refusal",
    "current_node",
    "redis_refusal",
    "redis_targets",
    "redis_urls",
    "refuses_to_start",
    "set_node",
]
