"""Who the client of a request is, behind reverse proxies, and its rejections counted across
receiver processes.

``ClientAddress`` takes the peer of the connection; when that peer is one of
``IDV_RECEIVER_TRUSTED_PROXIES`` it walks ``X-Forwarded-For`` from the right, skipping trusted
hops, and takes the first untrusted one: hops left of it were written by the client itself and
prove nothing. Without trusted proxies the header is ignored.

``SharedRejectLimiter`` counts rejected callbacks per client in Redis (one counter a client,
``<ns>{receiver}:rejects:<client>``, living one window from its first rejection), so N receiver
processes give a client the limit, not N times it. IPv6 clients are counted per /64 (one host
owns a whole /64), so the number of counters is bounded by the clients of one window. If Redis
fails the count falls back to the process's own ``RejectLimiter``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, cast

import redis

from worker.observability import get_logger
from worker.receiver.limits import RejectLimiter

log = get_logger("receiver")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


class ClientAddress:
    """The client of a request (see the module docstring)."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted: list[Network] = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def trusted(self, address: Address) -> bool:
        return any(address in net for net in self._trusted)

    def of(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """``peer``: the connection's address; ``forwarded_for``: every X-Forwarded-For value."""
        here = _address(peer) if peer else None
        if here is None:
            return peer or "unknown"
        if not self._trusted or not self.trusted(here):
            return str(here)
        hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                # A hop that is not an address: the chain cannot be followed past it.
                return str(here)
            if not self.trusted(address):
                return str(address)
            here = address
        return str(here)  # every hop trusted: the leftmost proxy is the client


def limit_key(client: str) -> str:
    """What a client is counted as: its address, an IPv6 one by its /64."""
    address = _address(client)
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address) if address is not None else client[:64]


class SharedRejectLimiter:
    """Rejected callbacks per client, counted in Redis across processes (module docstring)."""

    def __init__(self, client: redis.Redis, namespace: str, local: RejectLimiter) -> None:
        self._redis = client
        self._prefix = f"{namespace}{{receiver}}:rejects:"
        self.local = local
        self.limit = local.limit
        self._window_ms = max(1, int(local.window_s * 1000))

    def key(self, client: str) -> str:
        return self._prefix + limit_key(client)

    def blocked(self, client: str) -> bool:
        """Whether ``client`` used up its rejections in the window (any process's)."""
        try:
            count = cast("Any", self._redis.get(self.key(client)))
        except redis.RedisError:
            return self.local.blocked(limit_key(client))
        return count is not None and int(count) >= self.limit

    def rejected(self, client: str) -> None:
        """Count one rejected request of ``client``."""
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.key(client), 0, px=self._window_ms, nx=True)
                pipe.incr(self.key(client))
                pipe.execute()
        except redis.RedisError as exc:
            log.warning(
                "reject count in Redis failed (%s); counting in process", type(exc).__name__
            )
            self.local.rejected(limit_key(client))
