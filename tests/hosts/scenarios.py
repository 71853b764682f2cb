"""One partition scenario: batch rows and onboarding flows run while one link breaks and heals.

A scenario submits a batch of ``rows`` DocOcrV2 rows (at the quota, about ``rows / quota``
seconds of work) and starts ``flows`` onboarding flows spread over that time; ``fault_at``
seconds after submission it applies its fault, ``fault_s`` seconds later heals it, then waits
until every row has a final status and every flow a final ledger state (or ``settle_s`` passes).
The emulator is the judge of what the provider saw. It enforces the quota as the provider does
(every sliding second), so a call that arrives over it is throttled (not billed, retried) and
the limiter learns its margin from it: ``max_in_window`` (most calls served in any sliding
second) checks the emulator, the throttled count (sampled over time, to leave out the first
``LEARN_S`` seconds) is what the limiter let through over the quota, and the call counters find
a DocOcrV2 row billed more than once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.hosts import netns
from tests.hosts.stack import BATCH_PRODUCT, FLOW_PRODUCT, TOKEN, HostStack
from worker.batch import TERMINAL, ItemStatus, merchant_biz_id
from worker.cloudauth import DEFAULT_QUOTAS
from worker.devtools import wait_until
from worker.flows import batches
from worker.ledger import FINAL_STATES, State
from worker.ratelimit import QuotaTable, bucket_keys, read_bucket
from worker.wiring.blocks import build_core, build_ledger

# Throttles in the first seconds of a scenario are how the limiter learns its margin; the
# budget counts the ones after (see ``throttle_budget``).
LEARN_S = 10.0
# Throttled arrivals allowed per call after ``LEARN_S`` (over every scenario of the tier).
THROTTLE_BUDGET = 1 / 1000
SAMPLE_S = 0.5


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    fault_s: float
    cut: Callable[[HostStack], None]
    heal: Callable[[HostStack], None]


def _route(host: str, service: str, fault_s: float, what: str, name: str) -> Scenario:
    return Scenario(
        name, what, fault_s,
        lambda _s: netns.cut_route(host, service), lambda _s: netns.heal_route(host, service),
    )  # fmt: skip


SCENARIOS = (
    _route("w1", "redis", 30, "worker host w1 cut from Redis (blackhole route)", "worker-redis"),
    Scenario("redis-all", "Redis host cut from everyone (link down)", 15,
             lambda _s: netns.cut_host("redis"), lambda _s: netns.heal_host("redis")),
    _route("w1", "emulator", 30, "worker host w1 cut from the provider (blackhole route)",
           "worker-provider"),
    Scenario("s3-slow", "S3 link 50 ms each way instead of 10 ± 5 ms", 30,
             lambda s: s.link("s3", delay_ms=50, jitter_ms=0),
             lambda s: s.link("s3", delay_ms=10, jitter_ms=5)),
)  # fmt: skip


@dataclass
class Outcome:
    """What one scenario left behind (the figures of the table)."""

    scenario: str
    settled: bool = False
    rows: int = 0
    rows_lost: int = 0
    # Every row is a readable document: anything but done is a finding. ``uncertain`` (a
    # billed call whose answer never came back, held back by design) is reported, not lost.
    rows_not_done: int = 0
    uncertain: int = 0
    flows: int = 0
    flows_open: int = 0
    flows_not_archived: int = 0
    duplicated: int = 0
    unbilled: int = 0  # rows the provider never answered for (a done row must have been billed)
    evidence_lost: int = 0
    max_in_window: dict[str, int] = field(default_factory=dict)
    # Arrivals at the provider (served + throttled) and the throttled ones, all of them and
    # those after the first ``LEARN_S`` seconds.
    calls: int = 0
    throttled: int = 0
    calls_after: int = 0
    throttled_after: int = 0
    # The DocOcrV2 bucket's learned margin: at the end, and the most seen while it ran.
    margin_end: float = 0.0
    margin_max: float = 0.0
    widened: int = 0
    quota: float = 0.0
    rate_over_quota: float = 0.0
    wall_s: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)
    flow_states: dict[str, int] = field(default_factory=dict)
    died: list[str] = field(default_factory=list)

    @property
    def max_window(self) -> int:
        return max(self.max_in_window.values(), default=0)

    def failures(self) -> list[str]:
        """Why this outcome fails the tier (empty: it passes)."""
        checks = {
            "not settled": not self.settled,
            f"{self.rows_lost} rows lost": self.rows_lost,
            f"{self.rows_not_done} rows not done {self.statuses}": (
                self.rows_not_done - self.uncertain
            ),
            f"{self.flows_open} flows open": self.flows_open,
            f"{self.flows_not_archived} flows not archived": self.flows_not_archived,
            f"{self.duplicated} billed calls duplicated": self.duplicated,
            f"{self.unbilled} rows never billed": self.unbilled - self.uncertain > 0,
            f"{self.evidence_lost} evidence lost": self.evidence_lost,
            f"the emulator served {self.max_window} calls in one second (quota {self.quota:g})": (
                self.max_window > self.quota
            ),
        }
        return [reason for reason, bad in checks.items() if bad]


def retrying(fn: Callable[[], Any], timeout: float = 120) -> Any:
    """``fn()``, retried while Redis cannot be reached (a scenario may have cut it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis.RedisError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def throttle_budget(outcomes: list[Outcome]) -> str | None:
    """Why the tier's throttles exceed ``THROTTLE_BUDGET`` (None: within it).

    Judged over every scenario together: one scenario makes ~400 calls, too few for a rate of
    one in a thousand to mean anything on its own.
    """
    calls = sum(o.calls_after for o in outcomes)
    throttled = sum(o.throttled_after for o in outcomes)
    if throttled <= calls * THROTTLE_BUDGET:
        return None
    return (
        f"{throttled} throttled in {calls} calls after the first {LEARN_S:g} s of each scenario"
        f" (budget {THROTTLE_BUDGET * 1000:g} per 1,000: {calls * THROTTLE_BUDGET:.1f})"
    )


@dataclass
class Sample:
    """The emulator's counters and the limiter's margin at one moment of a scenario."""

    at: float  # seconds since the batch was submitted
    calls: int  # served + throttled, every action
    throttled: int
    margin: float | None  # None while Redis cannot be read


class Run:
    """One scenario on a running ``HostStack``."""

    def __init__(self, stack: HostStack, scenario: Scenario, images: list[tuple[str, str]],
                 workdir: Path, *, rows: int, flows: int, fault_at: float = 10,
                 settle_s: float = 300) -> None:  # fmt: skip
        self.stack = stack
        self.scenario = scenario
        self.images = images
        self.workdir = workdir
        self.rows = rows
        self.flow_count = flows
        self.fault_at = fault_at
        self.settle_s = settle_s
        self.client = stack.redis()
        self.core = build_core(stack.settings, ExitStack(), redis=self.client)
        self.ledger = build_ledger(self.core)
        self.tids: list[str] = []
        self.stop = threading.Event()
        self.sampled = threading.Event()
        self.samples: list[Sample] = []
        self.quotas = QuotaTable(stack.settings.quotas, DEFAULT_QUOTAS)
        self.bucket = bucket_keys(stack.settings.redis.namespace, BATCH_PRODUCT, "DocOcrV2")

    def item_id(self, n: int) -> str:
        return f"{self.scenario.name}-r{n}"

    def manifest(self) -> Path:
        path = self.workdir / f"{self.scenario.name}.jsonl"
        with path.open("w", encoding="utf-8") as out:
            for n in range(self.rows):
                image, doc_type = self.images[n % len(self.images)]
                # The batch id is the manifest's digest: item ids name the scenario, so each
                # scenario's batch is a new one and not the earlier, finished, batch again.
                row = {"image": image, "doc_type": doc_type, "item_id": self.item_id(n)}
                out.write(json.dumps(row) + "\n")
        return path

    def start_flows(self) -> None:
        """Start ``flow_count`` flows spread over the batch's ideal time (callbacks to the
        receiver through its proxy)."""
        spacing = 0.8 * self.rows / self.stack.quota / max(1, self.flow_count)
        for n in range(self.flow_count):
            biz = f"{self.scenario.name.replace('-', '')[:20]}{n:04d}"
            tid = str(self.stack.emulator("POST", "transactions", {
                "product_code": FLOW_PRODUCT, "merchant_biz_id": biz, "merchant_user_id": "u",
                "callback_url": f"{self.stack.receiver_url}/callback?productCode={FLOW_PRODUCT}",
                "callback_token": TOKEN})["transaction_id"])  # fmt: skip
            retrying(lambda tid=tid, biz=biz: self.ledger.record_start(tid, FLOW_PRODUCT, biz))
            self.stack.emulator("POST", f"transactions/{tid}/complete",
                                {"passed": "Y", "video_size": 300_000 + n})  # fmt: skip
            self.tids.append(tid)
            if self.stop.wait(spacing):
                return

    def faults(self, began: float) -> None:
        if self.stop.wait(max(0.0, began + self.fault_at - time.monotonic())):
            return
        self.scenario.cut(self.stack)
        try:
            self.stop.wait(self.scenario.fault_s)
        finally:
            self.scenario.heal(self.stack)

    def margin(self) -> float | None:
        """The DocOcrV2 bucket's margin now (None when Redis cannot be reached)."""
        try:
            return read_bucket(self.client, self.quotas, self.bucket).margin
        except (redis.RedisError, OSError):
            return None

    def counters(self) -> tuple[int, int]:
        """Calls that reached the emulator (served + throttled) and the throttled ones."""
        stats = self.stack.emulator("GET", "stats")["actions"]
        figures = [f for by_product in stats.values() for f in by_product.values()]
        throttled = sum(int(f.get("throttled", 0)) for f in figures)
        return sum(int(f.get("served", 0)) for f in figures) + throttled, throttled

    def sample(self, began: float) -> None:
        """Every ``SAMPLE_S``: the emulator's counters and the margin, until ``sampled`` is set."""
        while True:
            try:
                calls, throttled = self.counters()
            except httpx.HTTPError:
                pass  # the next sample, then
            else:
                at = time.monotonic() - began
                self.samples.append(Sample(round(at, 2), calls, throttled, self.margin()))
            if self.sampled.wait(SAMPLE_S):
                return

    def run(self) -> Outcome:
        self.stack.emulator("POST", "reset", {"stats": True})
        manifest = self.manifest()
        began = time.monotonic()
        with batches(self.stack.settings) as api:
            batch_id = api.submit(manifest).batch_id
        threads = [threading.Thread(target=self.start_flows, daemon=True),
                   threading.Thread(target=self.faults, args=(began,), daemon=True)]  # fmt: skip
        sampler = threading.Thread(target=self.sample, args=(began,), daemon=True)
        for thread in (*threads, sampler):
            thread.start()
        threads[1].join()  # the fault is healed before anything is judged
        threads[0].join()
        try:
            wait_until(lambda: retrying(lambda: self._settled(batch_id)), self.settle_s, 2.0)
            settled = True
        except TimeoutError:
            settled = False
        self.sampled.set()
        sampler.join()
        outcome = self.measure(batch_id, settled, time.monotonic() - began)
        self.client.close()
        return outcome

    def _settled(self, batch_id: str) -> bool:
        with batches(self.stack.settings) as api:
            progress = api.status(batch_id)
        return progress.processed >= progress.total and not self._open_flows()

    def _open_flows(self) -> list[str]:
        return [t for t in self.tids if (e := self.ledger.get(t)) is None
                or e.state not in FINAL_STATES]  # fmt: skip

    def measure(self, batch_id: str, settled: bool, wall: float) -> Outcome:
        with batches(self.stack.settings) as api:
            progress = retrying(lambda: api.status(batch_id))
        stats = self.stack.emulator("GET", "stats")["actions"]
        calls = self.stack.emulator("GET", "calls").get("DocOcrV2", {})
        billed = [
            int(calls.get(merchant_biz_id(batch_id, self.item_id(n)), {}).get("success", 0))
            for n in range(self.rows)
        ]
        states = Counter(
            (e.state.name.lower() if (e := self.ledger.get(t)) else "missing") for t in self.tids
        )
        evidence_lost = 0
        for tid in self.tids:
            raw = self.client.get(self.core.keys.result_tx(tid))
            if raw and json.loads(raw).get("status") == "evidence_lost":
                evidence_lost += 1
        windows = {
            f"{action}/{product}": int(figures.get("max_in_window", 0))
            for action, product in (("DocOcrV2", BATCH_PRODUCT), ("CheckResult", FLOW_PRODUCT))
            if (figures := stats.get(action, {}).get(product))
        }
        calls, throttled = self.counters()
        learnt = next((s for s in self.samples if s.at >= LEARN_S), None)
        margins = [s.margin for s in self.samples if s.margin is not None]
        end = retrying(lambda: read_bucket(self.client, self.quotas, self.bucket))
        span = (progress.last_at or 0) - (progress.first_at or 0)
        return Outcome(
            scenario=self.scenario.name,
            settled=settled,
            rows=progress.total,
            rows_lost=progress.total - sum(progress.counts.get(s, 0) for s in TERMINAL),
            rows_not_done=progress.total - progress.counts.get(ItemStatus.DONE, 0),
            uncertain=progress.counts.get(ItemStatus.UNCERTAIN, 0),
            flows=len(self.tids),
            flows_open=len(self._open_flows()),
            flows_not_archived=sum(
                n for s, n in states.items() if s != State.ARCHIVED.name.lower()
            ),
            duplicated=sum(max(0, b - 1) for b in billed),
            unbilled=sum(1 for b in billed if b == 0),
            evidence_lost=evidence_lost,
            max_in_window=windows,
            calls=calls,
            throttled=throttled,
            calls_after=calls - (learnt.calls if learnt else calls),
            throttled_after=throttled - (learnt.throttled if learnt else throttled),
            margin_end=round(end.margin, 4),
            margin_max=round(max([*margins, end.margin]), 4),
            widened=end.widened,
            quota=self.stack.quota,
            rate_over_quota=round(sum(billed) / span / self.stack.quota, 3) if span > 0 else 0.0,
            wall_s=round(wall, 1),
            statuses={s.name.lower(): n for s, n in progress.counts.items() if n},
            flow_states=dict(states),
            died=self.stack.dead(),
        )


def table(outcomes: list[Outcome]) -> str:
    """The per-scenario table ``make test-hosts`` prints."""
    head = ("scenario", "settled", "rows lost", "not done", "uncertain", "flows lost",
            "dup billed", "evid lost", "served max/1s (quota)", "throttled (after 10 s)",
            "margin end (max)", "rate/quota", "wall s", "result")  # fmt: skip
    lines = [head]
    for o in outcomes:
        fails = o.failures()
        lines.append((
            o.scenario, "yes" if o.settled else "NO", f"{o.rows_lost}/{o.rows}",
            str(o.rows_not_done), str(o.uncertain), f"{o.flows_not_archived}/{o.flows}",
            str(o.duplicated),
            str(o.evidence_lost),
            f"{o.max_window} ({o.quota:g})",
            f"{o.throttled}/{o.calls} ({o.throttled_after}/{o.calls_after})",
            f"{o.margin_end:.3f} ({o.margin_max:.3f})",
            f"{o.rate_over_quota:.2f}", f"{o.wall_s:.0f}",
            "ok" if not fails else "FAIL: " + "; ".join(fails),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in lines) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in lines
    )
