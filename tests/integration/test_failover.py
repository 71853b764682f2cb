"""Ten Sentinel failovers mid-work, and not one acknowledged ledger transition lost.

A primary, a replica and a real sentinel (quorum 1, ``down-after-milliseconds`` 500). Threads
drive onboarding flows through the ledger as the worker does (the flow starts, its callback
comes, an attempt claims it, the result is archived), each step retried until it is
acknowledged, through the ledger the CLI builder wires (``Cli``) with
``IDV_REDIS_WAIT_REPLICAS=1``. Each round cuts the replica behind (its link to the primary
dropped while it is stopped, so it cannot reconnect: what the primary applies now reaches no
replica), SIGKILLs the primary, waits for the sentinel to promote the replica, attaches a new
replica to the new primary; ten times. Afterwards every step any call acknowledged must be in
the ledger of the last primary.

The same run with ``IDV_REDIS_WAIT_REPLICAS=0`` (two rounds) shows what the test detects: the
writes the primary acknowledged while its replica was behind are gone after the failover.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from worker.devtools import RedisServer, SentinelServer, wait_until
from worker.ledger import Ledger, State
from worker.settings import load_settings
from worker.stores.replication import NotReplicated
from worker.wiring import Cli

MASTER = "idv-failover"
STEPS = ("start", "callback", "claim", "archived")


@dataclass
class Flows:
    """Producer threads driving flows through the ledger; what each call acknowledged."""

    ledger: Ledger
    threads: int = 3
    acked: dict[str, list[str]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    failed: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._workers = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)
        ]

    @property
    def count(self) -> int:
        with self.lock:
            return sum(len(steps) for steps in self.acked.values())

    def wait(self, *, acknowledged: int, or_refused: int | None = None) -> None:
        """Until this many more steps were acknowledged (or refused as not replicated)."""
        acked, refused = self.count, self.refused["not_replicated"]

        def progressed() -> bool:
            more_refused = self.refused["not_replicated"] - refused
            return self.count >= acked + acknowledged or (
                or_refused is not None and more_refused >= or_refused
            )

        wait_until(progressed, timeout=60, interval=0.01)

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def finish(self) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(timeout=30)

    def _run(self, index: int) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                tid = f"tx-fo-{index}-{n:05d}"
                for step in STEPS:
                    if not self._until_acknowledged(tid, step):
                        return
                n += 1
        except BaseException as exc:
            self.failed.append(exc)

    def _until_acknowledged(self, tid: str, step: str) -> bool:
        deadline = time.monotonic() + 60
        while not self.stop.is_set():
            try:
                self._step(tid, step)
            except NotReplicated:
                self.refused["not_replicated"] += 1
            except redis.RedisError:  # the primary is gone: the same step, on the new one
                self.refused["unreachable"] += 1
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            else:
                with self.lock:
                    self.acked.setdefault(tid, []).append(step)
                return True
        return False

    def _step(self, tid: str, step: str) -> None:
        ledger = self.ledger
        if step == "start":
            ledger.record_start(tid, "eKYC", f"m-{tid}")
        elif step == "callback":
            ledger.on_callback(tid, "eKYC", f"m-{tid}")
        elif step == "claim":
            now = time.time() + 10_000  # past the callback's re-drive time
            ledger.claim(tid, "rt", hold_until=now + 3600, now=now)
        else:
            ledger.finish(tid, evidence="stored")


def lost_steps(ledger: Ledger, acked: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Acknowledged steps the ledger does not hold."""
    lost = []
    for tid, steps in acked.items():
        entry = ledger.get(tid)
        held = set()
        if entry is not None:
            held |= {"start"} if State.INITIALIZED in entry.history else set()
            held |= {"callback"} if State.COMPLETED in entry.history else set()
            held |= {"claim"} if entry.attempts >= 1 else set()
            held |= {"archived"} if entry.state is State.ARCHIVED else set()
        lost += [(tid, step) for step in steps if step not in held]
    return lost


class Cluster:
    """The current primary, its replica and the sentinel; ``fail_over`` moves to the next."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0
        self.primary = self._server(None)
        self.replica = self._server(self.primary.port)
        self.sentinel = SentinelServer(
            root / "sentinel",
            MASTER,
            self.primary.port,
            down_after_ms=500,
            failover_timeout_ms=2000,
            log=root / "sentinel.log",
        ).start()
        self.sentinel.quicken()
        self.retired: list[RedisServer] = []
        self._ready()

    def _server(self, replica_of: int | None) -> RedisServer:
        self.generation += 1
        name = f"redis-{self.generation}"
        server = RedisServer(self.root / name, log=self.root / f"{name}.log", replica_of=replica_of)
        return server.start()

    def _ready(self) -> None:
        """The replica is in sync and the sentinel could promote it (and no other)."""
        wait_until(self.replica.in_sync, timeout=30, interval=0.05)
        wait_until(
            lambda: self.sentinel.healthy_replicas() == [self.replica.port],
            timeout=30,
            interval=0.05,
        )

    def cut_replica(self) -> None:
        """The replica falls behind: stopped, and its link dropped by the primary."""
        self.replica.proc.signal(signal.SIGSTOP)
        client = redis.Redis(port=self.primary.port, socket_timeout=2)
        try:
            client.client_kill_filter(_type="slave")
        finally:
            client.close()

    def fail_over(self) -> float:
        """SIGKILL the primary; the sentinel promotes the replica; a new replica joins it.

        Returns the seconds from the kill to the promotion.
        """
        killed_at = time.monotonic()
        self.primary.crash()
        self.replica.proc.signal(signal.SIGCONT)
        promoted = ("127.0.0.1", self.replica.port)
        wait_until(lambda: self.sentinel.primary() == promoted, timeout=30, interval=0.05)
        promotion_s = time.monotonic() - killed_at
        self.retired.append(self.primary)
        self.primary = self.replica
        self.replica = self._server(self.primary.port)
        self._ready()
        return promotion_s

    def close(self) -> None:
        self.sentinel.stop()
        for server in (self.replica, self.primary, *self.retired):
            server.proc.signal(signal.SIGCONT)
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    servers = Cluster(tmp_path)
    try:
        yield servers
    finally:
        servers.close()


def run_failovers(cluster: Cluster, rounds: int, wait_replicas: int) -> dict[str, object]:
    settings = load_settings(
        redis_url="redis://unused.invalid/0",
        redis_sentinels=cluster.sentinel.address,
        redis_sentinel_master=MASTER,
        redis_wait_replicas=str(wait_replicas),
        redis_wait_timeout_ms="300",
    )
    cli = Cli(settings)
    flows = Flows(cli.ledger)
    promotions = []
    try:
        flows.start()
        for _ in range(rounds):
            flows.wait(acknowledged=40)
            cluster.cut_replica()
            # Work goes on while the replica is behind: refused (waiting) or acknowledged.
            flows.wait(acknowledged=20, or_refused=3)
            promotions.append(cluster.fail_over())
        flows.wait(acknowledged=40)
    finally:
        flows.finish()
    try:
        assert not flows.failed, flows.failed
        lost = lost_steps(cli.ledger, flows.acked)
    finally:
        cli.close()
    return {
        "failovers": len(promotions),
        "promotion_max_s": max(promotions),
        "acknowledged": flows.count,
        "flows": len(flows.acked),
        "refused": dict(flows.refused),
        "lost": len(lost),
        "lost_sample": lost[:4],
    }


@pytest.mark.slow
def test_ten_failovers_lose_no_acknowledged_ledger_transition(cluster: Cluster) -> None:
    started = time.monotonic()
    report = run_failovers(cluster, rounds=10, wait_replicas=1)
    print(f"\nfailover (WAIT 1): {report}, {time.monotonic() - started:.0f}s")
    assert report["failovers"] == 10
    assert report["lost"] == 0, report["lost_sample"]
    # The replica was behind at every kill: writes were refused, not acknowledged and lost.
    refused = report["refused"]
    assert isinstance(refused, dict)
    assert refused.get("not_replicated", 0) >= 10


@pytest.mark.slow
def test_without_waiting_for_replicas_a_failover_loses_acknowledged_transitions(
    cluster: Cluster,
) -> None:
    report = run_failovers(cluster, rounds=2, wait_replicas=0)
    print(f"\nfailover (WAIT 0): {report}")
    assert report["failovers"] == 2
    assert report["lost"] >= 2  # the test sees a loss when there is one
