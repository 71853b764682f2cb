"""A private Redis Sentinel (``redis-server --sentinel``) watching one primary on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Self

import redis

from worker.devtools.procs import Proc, free_port, redis_server_binary


class SentinelServer:
    """One sentinel on a free port monitoring ``master`` at 127.0.0.1:``primary_port``.

    Quorum 1 and short timings: the primary is "down" after ``down_after_ms`` without an
    answer, and the sentinel promotes a replica right away.
    """

    def __init__(
        self,
        workdir: Path,
        master: str,
        primary_port: int,
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        log: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.master = master
        self.workdir = workdir
        self.config = workdir / "sentinel.conf"
        self._lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {workdir}",
            f"sentinel monitor {master} 127.0.0.1 {primary_port} 1",
            f"sentinel down-after-milliseconds {master} {down_after_ms}",
            f"sentinel failover-timeout {master} {failover_timeout_ms}",
            f"sentinel parallel-syncs {master} 1",
        ]
        self.proc = Proc(
            "sentinel", [redis_server_binary(), str(self.config), "--sentinel"], log=log
        )

    @property
    def address(self) -> str:
        """``host:port``, the form of ``IDV_REDIS_SENTINELS``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Write the config (the sentinel rewrites it) and wait until it names the primary."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(self._lines) + "\n")
        self.proc.start_ready(lambda: self.primary() is not None, timeout=30)
        return self

    def _ask(self, *command: str) -> object:
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return client.execute_command(*command)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return None
        finally:
            client.close()

    def primary(self) -> tuple[str, int] | None:
        """The primary's address as the sentinel currently names it."""
        reply = self._ask("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master)
        if not isinstance(reply, list | tuple) or len(reply) != 2:
            return None
        host, port = reply
        return _text(host), int(port)

    def replicas(self) -> int:
        """Replicas the sentinel has discovered (a failover needs one)."""
        reply = self._ask("SENTINEL", "REPLICAS", self.master)
        return len(reply) if isinstance(reply, list) else 0

    def healthy_replicas(self) -> list[int]:
        """Ports of the replicas the sentinel could promote now (known, not down or cut off)."""
        reply = self._ask("SENTINEL", "REPLICAS", self.master)
        ports = []
        for entry in reply if isinstance(reply, list) else []:
            fields = dict(zip(entry[::2], entry[1::2], strict=False))
            info = {_text(k): _text(v) for k, v in fields.items()}
            flags = set(info.get("flags", "").split(","))
            if flags == {"slave"} and info.get("master-link-status") == "ok":
                ports.append(int(info["port"]))
        return ports

    def quicken(self, *, info_period_ms: int = 250, ping_period_ms: int = 100) -> None:
        """Shorter periods (``SENTINEL DEBUG``, Redis 7): a replica attached to a new primary
        is known within ``info_period_ms`` (not at the next 10 s ``INFO``), a dead primary
        noticed within ``ping_period_ms`` of ``down_after_ms``."""
        reply = self._ask(
            "SENTINEL", "DEBUG", "info-period", str(info_period_ms),
            "ping-period", str(ping_period_ms),
        )  # fmt: skip
        if reply not in (b"OK", "OK"):
            raise RuntimeError(f"SENTINEL DEBUG refused: {reply!r} (needs Redis 7)")

    def stop(self) -> None:
        self.proc.stop(timeout=5)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
