"""The local stack on free loopback ports: Redis, an S3 API, the emulator, receiver, workers, beat.

``DevStack`` starts the pieces of ``worker.devtools.procs`` one by one (``make demo``, the
benchmarks) or all at once (``up``: what ``idv-worker dev up`` runs). Every process is a child
of the caller, in its own session; ``close`` stops them all, and a ``Reaper`` stops their
process groups if the caller dies without closing (SIGKILL). Nothing here is used in production.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from worker.devtools.procs import (
    ALL_QUEUES,
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    S3_KEY_ID,
    S3_SECRET,
    Proc,
    RedisServer,
    celery_beat_command,
    celery_worker_command,
    free_port,
    spawn_emulator,
    spawn_receiver,
    spawn_s3,
)
from worker.devtools.reaper import Reaper
from worker.queues import QUEUE_ARCHIVAL, QUEUE_BULK, QUEUE_REALTIME, QUEUE_WEBHOOKS

# The workers of ``up``: one per lane, as in deploy/ (name -> queue, pool processes), small
# enough for a laptop.
LANES: dict[str, tuple[str, int]] = {
    "realtime": (QUEUE_REALTIME, 2),
    "webhooks": (QUEUE_WEBHOOKS, 1),
    "archival": (QUEUE_ARCHIVAL, 1),
    "bulk": (QUEUE_BULK, 2),
}

Report = Callable[[str, str], None]


def _quiet(name: str, detail: str) -> None:
    pass


class DevStack:
    """The local stack; start pieces with the ``start_*`` methods (or all with ``up``), stop all
    with ``close``."""

    def __init__(self, workdir: Path | None = None) -> None:
        """``workdir``: where logs and data go (kept); without it, a temporary folder that
        ``close`` removes."""
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="idv-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.redis_url = ""
        self.s3_endpoint = ""
        self.emulator_url = ""
        self.receiver_url = ""
        self.metrics_url = ""
        self._reaper: Reaper | None = None

    def _log(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _keep(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        if self._reaper is None:
            self._reaper = Reaper()
        self._reaper.watch(proc.pid)  # its own session: its group id is its pid
        return proc

    def start_redis(self) -> str:
        """Redis with AOF in ``workdir``: started again on the same folder, it keeps its data."""
        server = RedisServer(self.workdir, log=self._log("redis")).start()
        self._keep(server.proc)
        self.redis_url = server.url
        return self.redis_url

    def start_s3(self) -> str:
        port = free_port()
        self._keep(spawn_s3(port, self._log("s3")))
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        return self.s3_endpoint

    def start_emulator(self, *, quotas: Mapping[str, float] | None = None,
                       extra: Sequence[str] = ()) -> str:  # fmt: skip
        port = free_port()
        key = f"{DEMO_ACCESS_KEY_ID}:{DEMO_ACCESS_KEY_SECRET}"
        args = [arg for product, qps in (quotas or {}).items()
                for arg in ("--quota", f"{product}={qps:g}")]  # fmt: skip
        self._keep(spawn_emulator(port, key, *args, *extra, log=self._log("emulator")))
        self.emulator_url = f"http://127.0.0.1:{port}"
        return self.emulator_url

    def env(self, **overrides: str) -> dict[str, str]:
        """``IDV_*`` variables that point the project at this stack."""
        env = {
            "IDV_ENDPOINT": self.emulator_url,
            "IDV_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
            "IDV_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET,
            "IDV_REDIS_URL": self.redis_url,
            "IDV_S3_ENDPOINT_URL": self.s3_endpoint,
            "IDV_S3_ACCESS_KEY_ID": S3_KEY_ID,
            "IDV_S3_SECRET_ACCESS_KEY": S3_SECRET,
            # A throwaway stack: a Redis that would lose data is warned about, not refused.
            "IDV_MODE": "development",
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v}

    def start_receiver(self, env: Mapping[str, str], port: int | None = None) -> str:
        port = port or free_port()
        metrics_port = int(env.get("IDV_METRICS_PORT") or free_port())
        self._keep(spawn_receiver(port, env, self._log("receiver"), metrics_port=metrics_port))
        self.receiver_url = f"http://127.0.0.1:{port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        return self.receiver_url

    def start_worker(
        self,
        env: Mapping[str, str],
        *,
        queues: Sequence[str] = ALL_QUEUES,
        concurrency: int = 4,
        name: str = "worker",
        events: bool = False,
    ) -> Proc:
        cmd = celery_worker_command(
            queues=queues, concurrency=concurrency, name=name, events=events
        )
        return self._keep(Proc(name, cmd, env, self._log(name)).start())

    def start_lanes(self, env: Mapping[str, str], report: Report = _quiet) -> list[Proc]:
        """One worker per lane of ``LANES``, task events on; returns once every pool is up."""
        procs = [
            self.start_worker(env, queues=(queue,), concurrency=size, name=lane, events=True)
            for lane, (queue, size) in LANES.items()
        ]
        for proc, (queue, size) in zip(procs, LANES.values(), strict=True):
            proc.wait_children(size)
            report(proc.name, f"celery worker {proc.name}@ on {queue}, {size} process(es), -E")
        return procs

    def start_beat(self, env: Mapping[str, str]) -> Proc:
        """``celery beat`` (the sweeps), its state in ``workdir``; returns once it ticks."""
        log = self._log("beat")
        start = log.stat().st_size if log.exists() else 0  # the log of an earlier run stays

        def started() -> bool:
            with log.open("rb") as text:
                text.seek(start)
                return b"beat: Starting" in text.read()

        cmd = celery_beat_command(self.workdir / "celerybeat-schedule")
        return self._keep(Proc("beat", cmd, env, log).start_ready(started))

    def wait_reconciled(self, beat: Proc, since: float, timeout: float = 60.0) -> None:
        """Wait until the reconciler ran after ``since`` (beat sends it at start): what
        ``idv-worker doctor`` checks to say beat is running."""
        import redis

        from worker.keys import RedisKeys
        from worker.ledger import Ledger
        from worker.settings import load_settings

        settings = load_settings(redis_url=self.redis_url)
        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            ledger = Ledger(
                client,
                RedisKeys(settings.redis.namespace),
                settings.ledger,
                evidence_window_s=settings.onboarding.evidence_window_s,
            )
            beat.wait_for(lambda: (ledger.last_sweep("reconcile") or 0) >= since, timeout)
        finally:
            client.close()

    def ensure_bucket(self, env: Mapping[str, str]) -> str:
        """Create the bucket ``env`` names (``S3ObjectStore.ensure_bucket``); returns its name."""
        from worker.settings import load_settings
        from worker.storage import S3ObjectStore

        s3 = {k.removeprefix("IDV_").lower(): v for k, v in env.items() if k.startswith("IDV_S3_")}
        store = S3ObjectStore(load_settings(**s3).storage)
        try:
            store.ensure_bucket()
        finally:
            store.close()
        return store.bucket

    def up(self, overrides: Mapping[str, str], report: Report = _quiet) -> dict[str, str]:
        """Start everything (``idv-worker dev up``); returns the ``IDV_*`` environment to use.

        Redis (AOF), the S3 API with the bucket created, the emulator, the receiver (its
        callback URL in ``IDV_CALLBACK_URL``), one worker per lane and beat; ``report`` is told
        each piece as it answers.
        """
        report("redis", self.start_redis())
        report("s3", self.start_s3())
        report("emulator", self.start_emulator())
        port = free_port()
        env = self.env(IDV_CALLBACK_URL=f"http://127.0.0.1:{port}/callback", **overrides)
        env["IDV_S3_BUCKET"] = self.ensure_bucket(env)
        report("bucket", env["IDV_S3_BUCKET"])
        report("receiver", self.start_receiver(env, port))
        self.start_lanes(env, report)
        since = time.time()
        self.wait_reconciled(self.start_beat(env), since)
        report("beat", f"celery beat (reconciler ran), schedule state in {self.workdir}")
        return env

    def endpoints(self) -> dict[str, str]:
        """Where each piece answers (``idv-worker dev up --json``)."""
        return {
            "redis_url": self.redis_url,
            "s3_endpoint_url": self.s3_endpoint,
            "endpoint": self.emulator_url,
            "receiver_url": self.receiver_url,
            "metrics_url": self.metrics_url,
        }

    def exited(self) -> Proc | None:
        """The first process of the stack that is no longer running, if any."""
        return next((proc for proc in self.procs if not proc.alive()), None)

    def close(self, on_stop: Callable[[Proc], None] | None = None) -> None:
        """Stop every process, the last started first; ``on_stop`` is told each one."""
        for proc in reversed(self.procs):
            proc.stop()
            if on_stop is not None:
                on_stop(proc)
        self.procs.clear()
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> DevStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
