"""Developer tools: the local stack and the demo. Never imported by production code."""

from __future__ import annotations

from worker.devtools.devstack import LANES, DevStack
from worker.devtools.procs import (
    ALL_QUEUES,
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    ROOT,
    S3_KEY_ID,
    S3_SECRET,
    Proc,
    RedisServer,
    celery_beat_command,
    celery_worker_command,
    emulator_command,
    free_port,
    http_ok,
    port_open,
    redis_server_binary,
    spawn_emulator,
    spawn_receiver,
    spawn_s3,
    wait_until,
)
from worker.devtools.sentinel import SentinelServer

__all__ = [
    "ALL_QUEUES",
    "DEMO_ACCESS_KEY_ID",
    "DEMO_ACCESS_KEY_SECRET",
    "LANES",
    "ROOT",
    "S3_KEY_ID",
    "S3_SECRET",
    "DevStack",
    "Proc",
    "RedisServer",
    "SentinelServer",
    "celery_beat_command",
    "celery_worker_command",
    "emulator_command",
    "free_port",
    "http_ok",
    "port_open",
    "redis_server_binary",
    "spawn_emulator",
    "spawn_receiver",
    "spawn_s3",
    "wait_until",
]
