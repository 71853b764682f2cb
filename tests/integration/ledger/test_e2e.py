"""Every flow accounted for, end to end, with the ledger as the truth.

Real processes on the session's Redis, S3 and emulator: the receiver, Celery workers and *two*
beats (the sweeps' locks and per-transaction claims make the second one harmless). Flows are
started through the ledger, imported, or only called back; 10% of callbacks are dropped, the
receiver is down for a wave, the provider fails half its answers for another while a worker
node holding delayed retries is SIGKILLed, and some flows never complete. Times are compressed
(evidence window 60 s, retention 300 s, reconcile after 5 s). At the end no transaction is in
an open state, every completed one is archived with its evidence, resent callbacks after
success change nothing, and the emulator shows each archived result fetched once.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.e2e import E2EServers, E2EStack
from tests.fixtures.emulator import EmulatorHandle
from tests.fixtures.servers import free_port, wait_until
from tests.fixtures.workers import CeleryWorker
from worker.devtools import Proc, spawn_receiver
from worker.ledger import FINAL_STATES, Ledger, State

pytestmark = pytest.mark.slow

TOKEN = "tok-ledger-e2e"
LIFETIME_S = 20  # the floor is 10 s; the never-completed flows wait this long


@dataclass
class Stack(E2EStack):
    receiver: Proc | None = None
    receiver_port: int = 0
    workers: list[CeleryWorker] = field(default_factory=list)
    beats: list[Proc] = field(default_factory=list)

    @property
    def callback_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}/callback"

    def start_receiver(self) -> None:
        self.receiver = spawn_receiver(self.receiver_port, self.env, self.logdir / "receiver.log")

    def beat(self, name: str) -> Proc:
        cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "-l", "INFO",
               "-s", str(self.logdir / f"{name}-schedule")]  # fmt: skip
        return Proc(name, cmd, self.env, self.logdir / f"{name}.log").start()

    def ledger(self) -> Ledger:
        from contextlib import ExitStack

        from worker.settings import load_settings
        from worker.wiring import blocks

        env = {k[4:].lower(): v for k, v in self.env.items() if k.startswith("IDV_")}
        # The worker's ledger on this stack's client (the core opens nothing of its own).
        core = blocks.build_core(load_settings(**env), ExitStack(), redis=self.redis)
        return blocks.build_ledger(core)


@pytest.fixture(scope="module")
def stack(e2e_servers: E2EServers) -> Iterator[Stack]:
    with e2e_servers.open(
        Stack,
        "ledger-e2e",
        IDV_CALLBACK_TOKENS=TOKEN,
        IDV_QUOTAS="eKYC=2000,FACE_LIVENESS=2000",
        IDV_ONBOARDING_LEASE_S="5",
        IDV_HEARTBEAT_EVERY_S="1",
        IDV_EVIDENCE_WINDOW_S="60",
        IDV_RECONCILE_AFTER_S="5",
        IDV_RECONCILE_EVERY_S="1",
        IDV_ARCHIVE_EVERY_S="2",
        IDV_ARCHIVE_MARGIN_S="60",
        IDV_PROVIDER_RETENTION_S="300",
        IDV_FLOW_LIFETIME_S=str(LIFETIME_S),
    ) as opened:
        opened.receiver_port = free_port()
        opened.start_receiver()
        opened.workers = [opened.worker(f"l{i}", concurrency=3) for i in (1, 2)]
        opened.beats = [opened.beat("beat1"), opened.beat("beat2")]
        try:
            for worker in opened.workers:
                worker.wait_ready()
            yield opened
        finally:
            for proc in [*opened.workers, *opened.beats]:
                proc.stop()
            if opened.receiver is not None:
                opened.receiver.stop(timeout=10)


def _start(stack: Stack, emulator: EmulatorHandle, ledger: Ledger, n: int, tag: str) -> list[str]:
    """Flows started through us: created at the provider and recorded in the ledger."""
    tids = []
    for i in range(n):
        product = ("eKYC", "FACE_LIVENESS")[i % 2]
        biz = f"{tag}{i:04d}"
        tid = emulator.create_transaction(
            product,
            merchant_biz_id=biz,
            callback_url=f"{stack.callback_url}?productCode={product}&merchantBizId={biz}",
            callback_token=TOKEN,
        )
        assert ledger.record_start(tid, product, biz)
        tids.append(tid)
    return tids


def _complete(emulator: EmulatorHandle, tids: list[str]) -> dict[str, dict[str, Any]]:
    return {tid: emulator.complete(tid, video_size=64 * 1024 + len(tid)) for tid in tids}


def _calls_y(emulator: EmulatorHandle, tid: str) -> int:
    counts: dict[str, Any] = emulator._call("GET", f"calls/CheckResult/{tid}")
    return int(counts.get("Y", {}).get("success", 0))


def test_every_flow_ends_in_a_final_state(stack: Stack, emulator: EmulatorHandle) -> None:
    ledger = stack.ledger()
    emulator.set_faults(drop_callbacks=0.1, drop_callbacks_seed=7)

    # Wave 1: callbacks arrive (10% dropped: the reconciler polls those).
    wave1 = _start(stack, emulator, ledger, 60, "a")
    done = _complete(emulator, wave1)

    # Wave 2: the receiver is down while its callbacks come (all fail).
    wave2 = _start(stack, emulator, ledger, 30, "b")
    assert stack.receiver is not None
    stack.receiver.stop(timeout=10)
    done |= _complete(emulator, wave2)
    time.sleep(2)
    stack.start_receiver()

    # Wave 3: the provider fails half its CheckResult answers; the node holding the delayed
    # retries is killed (its messages wait for the visibility timeout: the ledger re-drives).
    emulator.set_faults(error_503_rate=0.5, actions=["CheckResult"])
    wave3 = _start(stack, emulator, ledger, 30, "c")
    done |= _complete(emulator, wave3)
    wait_until(lambda: int(stack.redis.hlen("unacked")) > 0, timeout=30, interval=0.1)
    stack.workers[0].kill()
    emulator.set_faults(error_503_rate=0, actions=None)
    stack.workers.append(stack.worker("l3", concurrency=3))

    # Completed elsewhere, imported; and callbacks for flows the ledger never saw.
    imported = [emulator.create_transaction("eKYC", merchant_biz_id=f"imp{i}") for i in range(10)]
    done |= _complete(emulator, imported)
    row = {"productCode": "eKYC", "completedAt": time.time() - 120}
    lines = [
        json.dumps({**row, "transactionId": t, "merchantBizId": f"imp{i}"})
        for i, t in enumerate(imported)
    ]
    manifest = Path(stack.logdir) / "import.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    result = stack.cli("ledger", "import", str(manifest), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 10
    strangers = [emulator.create_transaction("eKYC", merchant_biz_id=f"s{i}",
                                             callback_url=stack.callback_url,
                                             callback_token=TOKEN) for i in range(10)]  # fmt: skip
    done |= _complete(emulator, strangers)
    # A stranger whose callback was dropped is unknowable (neither started nor imported here).
    unknowable = {t for t in strangers if emulator.transaction(t)["callback_state"] == "dropped"}
    strangers = [t for t in strangers if t not in unknowable]
    done = {t: d for t, d in done.items() if t not in unknowable}

    # Started and never finished: abandoned at the end of the flow's lifetime.
    never = _start(stack, emulator, ledger, 10, "n")

    every = [*wave1, *wave2, *wave3, *imported, *strangers, *never]

    def open_entries() -> list[str]:
        out = []
        for tid in every:
            entry = ledger.get(tid)
            if entry is None or entry.state not in FINAL_STATES:
                out.append(tid)
        return out

    try:
        wait_until(lambda: not open_entries(), timeout=240, interval=1.0)
    except TimeoutError:
        left = {t: ledger.get(t) for t in open_entries()[:5]}
        raise AssertionError(f"open after 240 s: {len(open_entries())}: {left}\n"
                             f"{stack.logs()}") from None  # fmt: skip

    states = Counter(ledger.get(t).state for t in every)  # type: ignore[union-attr]
    assert states == {State.ARCHIVED: len(done), State.ABANDONED: len(never)}, states
    dropped = emulator._call("GET", "transactions?callback_state=dropped")["transactions"]
    assert dropped, "the fault dropped no callback"

    # Evidence: stored for every flow processed while its video could still be had.
    lost = []
    for tid, completed in done.items():
        record = json.loads(stack.redis.get(f"idv:result:tx:{tid}") or b"null")
        assert record is not None, tid
        if record["status"] == "evidence_lost":
            lost.append(tid)
            continue
        assert record["evidence"]["video"]["sha256"] == completed["video_sha256"], tid
    assert lost == [], f"evidence lost for {len(lost)}: {lost[:3]}"

    # Each archived result was fetched with images once; re-drives did not fetch it again
    # (a node killed mid-fetch may have cost one repeat: counted, at most one per flow).
    repeats = {t: n for t in done if (n := _calls_y(emulator, t)) != 1}
    assert all(n == 2 for n in repeats.values()), repeats
    assert len(repeats) <= 6, repeats

    # A resent callback after success is a repeat: no new work.
    before = _calls_y(emulator, wave1[0])
    params = {"transactionId": wave1[0], "passed": "Y", "subCode": "200", "callbackToken": TOKEN}
    answer = httpx.get(stack.callback_url, params=params, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["status"] == "duplicate"
    time.sleep(1.5)
    assert _calls_y(emulator, wave1[0]) == before

    # Nothing left behind in the indexes; the reconciler ran under both beats without doubling.
    assert ledger.queued("rt") == 0
    assert ledger.queued("ar") == 0
    assert ledger.open_count() == 0
