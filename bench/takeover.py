"""Takeover latency in a chaos run: from a worker's death to its work running elsewhere.

A ``LeaseWatch`` polls every lease the run's work can hold (chunk leases of the batch, the
per-transaction onboarding leases) twenty times a second (a holder that fails at once, say on
an S3 outage, may hold a lease for less than that and go unseen). A live holder keeps renewing its
lease, so its expiry moves; a released lease disappears before its expiry. A lease that a new
token holds *after* the old token's expiry passed was taken over from a holder that stopped
renewing. When a kill lies within one lease before that expiry (the holder's last renewal came
before the kill), the holder died: its takeover time is from that kill to the first sight of
the new holder. A lease that ran out later than a lease after every kill was renewed after
the last one, so its holder did not die but stalled (Redis away, a stopped process): those
takeovers are counted apart (``stalled_takeovers``), not timed against a death.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from dataclasses import dataclass

import redis

SLACK_S = 0.3  # polling and clock slack
SLOW_S = 10.0  # takeovers slower than this are printed as they are seen


@dataclass
class _Seen:
    token: str
    expires: float


class LeaseWatch:
    def __init__(
        self, client: redis.Redis, chunk_leases_key: str, lease_prefix: str, *, lease_s: float
    ) -> None:
        self.client = client
        self.lease_s = lease_s
        self.stalled = 0
        self.chunk_key = chunk_leases_key
        self.prefix = lease_prefix
        self.kills: list[float] = []
        self.takeovers: list[float] = []
        self.by_kind: dict[str, list[float]] = {}
        self._seen: dict[str, _Seen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LeaseWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def killed(self) -> None:
        self.kills.append(time.time())

    def _leases(self) -> dict[str, _Seen]:
        out: dict[str, _Seen] = {}
        for chunk, raw in self.client.hgetall(self.chunk_key).items():
            token, _, expires = raw.decode().partition("|")
            out[f"chunk:{chunk.decode()}"] = _Seen(token, float(expires))
        now = time.time()
        for key in self.client.scan_iter(match=f"{self.prefix}*", count=500):
            pipe = self.client.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            token, pttl = pipe.execute()
            if token is not None and pttl > 0:
                out[key.decode()] = _Seen(token.decode(), now + pttl / 1000)
        return out

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(redis.RedisError):
                self._look(self._leases(), time.time())

    def _look(self, leases: dict[str, _Seen], now: float) -> None:
        for name, last in list(self._seen.items()):
            current = leases.get(name)
            if current is None:
                if now < last.expires - SLACK_S:
                    del self._seen[name]  # released by its holder
                continue  # ran out: waiting for someone to take it over
            if current.token == last.token:
                self._seen[name] = current
                continue
            if now >= last.expires - SLACK_S:
                kill = max((k for k in self.kills if k <= last.expires), default=None)
                if kill is not None and last.expires - kill <= self.lease_s + SLACK_S:
                    self.takeovers.append(now - kill)
                    if now - kill > SLOW_S:
                        at = time.strftime("%H:%M:%S", time.localtime(kill))
                        print(f"# slow takeover of {name}: killed at {at}, its lease ran out"
                              f" {last.expires - kill:.1f}s later, a new holder after"
                              f" {now - kill:.1f}s", flush=True)  # fmt: skip
                    kind = "chunk" if name.startswith("chunk:") else "onboarding"
                    self.by_kind.setdefault(kind, []).append(round(now - kill, 1))
                else:
                    self.stalled += 1
            self._seen[name] = current
        for name, current in leases.items():
            self._seen.setdefault(name, current)

    def figures(self) -> dict[str, float | int | None]:
        def pct(p: float) -> float | None:
            if not self.takeovers:
                return None
            ordered = sorted(self.takeovers)
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

        return {
            "takeovers": len(self.takeovers),
            "takeover_p50_s": round(statistics.median(self.takeovers), 1)
            if self.takeovers
            else None,
            "takeover_p99_s": pct(0.99),
            "takeover_max_s": pct(1.0),
            "stalled_takeovers": self.stalled,
            "takeover_s_by_kind": {k: sorted(v) for k, v in sorted(self.by_kind.items())},
        }
