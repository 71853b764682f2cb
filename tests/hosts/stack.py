"""The project spread over the hosts of ``tests.hosts.netns``, one process kind per host.

Redis (AOF ``everysec``), moto's S3 API, the emulator and the receiver each on their own host;
three worker hosts each running a Celery worker on every queue (beat beside the third); the
proxy on the router. Processes on the hosts reach each service through its proxy address; this
process (the operator) talks to each one directly. ``close`` stops every process, then
``netns.teardown`` removes the hosts (and kills, by pid, anything left in them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import redis

from tests.hosts import netns
from tests.hosts.netns import HOSTS, PROXIED, ROUTER_IP
from worker.devtools import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    S3_KEY_ID,
    S3_SECRET,
    Proc,
    celery_beat_command,
    celery_worker_command,
    emulator_command,
    http_ok,
    port_open,
    redis_server_binary,
)
from worker.settings import Settings, load_settings

PORTS = {"redis": 6390, "s3": 5000, "emulator": 8765, "receiver": 8000}
CONTROL_PORT = 7000
WORKER_HOSTS = ("w1", "w2", "w3")
BUCKET = "idv-hosts"
TOKEN = "hosts-token"
BATCH_PRODUCT = "ID_OCR_MIN"
FLOW_PRODUCT = "eKYC"
# The emulator enforces the same quota as the limiter is told, counted as a real provider does
# (every sliding 1-second window): a call that arrives over it is answered ``Throttling.Api``
# (not billed; the worker retries it and its limiter learns a wider margin from it).
EMULATOR_ALGORITHM = "sliding"
# Every link: 10 ± 5 ms each way; this share of chunks "lost" (held one 200 ms RTO longer).
LOSS = float(os.environ.get("IDV_HOSTS_LOSS", "0.005"))


def address(service: str, *, proxied: bool) -> str:
    host = PROXIED[service] if proxied else HOSTS[service]
    return f"{host}:{PORTS[service]}"


def project_env(quota: float, *, proxied: bool) -> dict[str, str]:
    """``IDV_*`` for the project's processes: through the proxies on the hosts, direct for us."""
    return {
        "IDV_MODE": "development",
        "IDV_ENDPOINT": f"http://{address('emulator', proxied=proxied)}",
        "IDV_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
        "IDV_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET,
        "IDV_REDIS_URL": f"redis://{address('redis', proxied=proxied)}/0",
        "IDV_S3_ENDPOINT_URL": f"http://{address('s3', proxied=proxied)}",
        "IDV_S3_ACCESS_KEY_ID": S3_KEY_ID,
        "IDV_S3_SECRET_ACCESS_KEY": S3_SECRET,
        "IDV_S3_BUCKET": BUCKET,
        "IDV_CALLBACK_TOKENS": TOKEN,
        "IDV_LOG_LEVEL": "WARNING",
        "IDV_QUOTAS": f"{BATCH_PRODUCT}={quota:g},{FLOW_PRODUCT}={quota:g}",
        "IDV_READ_TIMEOUT": "3",
        "IDV_RECONCILE_AFTER_S": "10",
        "IDV_RECONCILE_EVERY_S": "2",
        "IDV_ARCHIVE_EVERY_S": "5",
        "IDV_ONBOARDING_LEASE_S": "10",
        "IDV_BATCH_LEASE_S": "30",
        "IDV_LIMITER_MAX_WAIT_S": "20",
        "IDV_BATCH_WATCHDOG_INTERVAL_S": "5",
        # 400 rows in 16 chunks: every worker host has chunks to hold when its link breaks.
        "IDV_BATCH_CHUNK_SIZE": "25",
    }


class HostStack:
    """Every host and process of the tier; ``start`` builds them, ``close`` removes them."""

    def __init__(self, workdir: Path, quota: float) -> None:
        self.workdir = workdir
        self.quota = quota
        self.procs: dict[str, Proc] = {}
        self.env = project_env(quota, proxied=True)
        self.operator_env = project_env(quota, proxied=False)
        self.settings: Settings = load_settings(
            **{k[4:].lower(): v for k, v in self.operator_env.items()}
        )
        self.emulator_url = f"http://{address('emulator', proxied=False)}"
        self.receiver_url = f"http://{address('receiver', proxied=True)}"
        self.control = httpx.Client(base_url=f"{self.emulator_url}/_emulator", timeout=30)

    def _spawn(
        self, name: str, host: str, cmd: list[str], env: dict[str, str] | None = None
    ) -> Proc:
        proc = Proc(name, [*netns.exec_prefix(host), *cmd], env, self.workdir / f"{name}.log")
        self.procs[name] = proc
        return proc.start()

    def start(self) -> HostStack:
        netns.build()
        links = [f"{s}={address(s, proxied=True)},{address(s, proxied=False)}" for s in PORTS]
        control = f"{ROUTER_IP}:{CONTROL_PORT}"
        self._spawn("proxy", "router", [sys.executable, "-m", "tests.hosts.proxy", "--control",
                    control, "--loss", str(LOSS),
                    *(a for link in links for a in ("--link", link))])  # fmt: skip
        self.procs["proxy"].wait_for(lambda: port_open(CONTROL_PORT, ROUTER_IP))
        (self.workdir / "redis").mkdir(exist_ok=True)
        self._spawn("redis", "redis", [redis_server_binary(), "--port", str(PORTS["redis"]),
                    "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly",
                    "yes", "--appendfsync", "everysec", "--dir", str(self.workdir / "redis"),
                    "--maxclients", "4000"])  # fmt: skip
        self.procs["redis"].wait_for(lambda: bool(self.redis().ping()))
        s3_keys = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        self._spawn("s3", "s3", [sys.executable, "-m", "moto.server", "-H", "0.0.0.0", "-p",
                    str(PORTS["s3"])], s3_keys)  # fmt: skip
        self.procs["s3"].wait_for(lambda: port_open(PORTS["s3"], HOSTS["s3"]))
        key = f"{DEMO_ACCESS_KEY_ID}:{DEMO_ACCESS_KEY_SECRET}"
        quotas = [
            a for p in (BATCH_PRODUCT, FLOW_PRODUCT) for a in ("--quota", f"{p}={self.quota:g}")
        ]
        quotas += ["--quota-algorithm", EMULATOR_ALGORITHM]
        self._spawn("emulator", "emulator", emulator_command(PORTS["emulator"], key, "--host",
                    "0.0.0.0", *quotas, "--callback-retries", "20", "--callback-retry-interval",
                    "2"))  # fmt: skip
        self.procs["emulator"].wait_for(http_ok(f"{self.emulator_url}/_emulator/health"))
        self._ensure_bucket()
        self._spawn("receiver", "receiver", [sys.executable, "-m", "worker", "receiver", "--host",
                    "0.0.0.0", "--port", str(PORTS["receiver"])], self.env)  # fmt: skip
        url = f"http://{address('receiver', proxied=False)}/healthz"
        self.procs["receiver"].wait_for(http_ok(url))
        for host in WORKER_HOSTS:
            self._spawn(host, host, celery_worker_command(concurrency=2, name=host), self.env)
        self._spawn("beat", "w3", celery_beat_command(self.workdir / "beat-schedule"), self.env)
        for host in WORKER_HOSTS:
            self.procs[host].wait_children(2, timeout=60)
        return self

    def _ensure_bucket(self) -> None:
        from worker.storage import S3ObjectStore

        store = S3ObjectStore(self.settings.storage)
        try:
            store.ensure_bucket()
        finally:
            store.close()

    def redis(self) -> redis.Redis:
        """A client of the Redis host, direct (not through the proxy)."""
        return redis.Redis(host=HOSTS["redis"], port=PORTS["redis"], socket_timeout=5,
                           socket_connect_timeout=2)  # fmt: skip

    def emulator(self, method: str, path: str, payload: Any = None) -> Any:
        """The emulator's control API."""
        response = self.control.request(method, path, json=payload)
        response.raise_for_status()
        return response.json()

    def link(self, service: str, **settings: float) -> None:
        """Change what the router's proxy does to ``service``'s link."""
        import socket

        with socket.create_connection((ROUTER_IP, CONTROL_PORT), timeout=5) as conn:
            line = " ".join(f"{k}={v}" for k, v in settings.items())
            conn.sendall(f"set {service} {line}\n".encode())
            answer = conn.makefile().readline().strip()
        if answer != "ok":
            raise RuntimeError(f"proxy: {answer}")

    def dead(self) -> list[str]:
        """The processes that are no longer running."""
        return [name for name, proc in self.procs.items() if not proc.alive()]

    def close(self) -> None:
        self.control.close()
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout=10)
        netns.teardown()
