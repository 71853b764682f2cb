"""The receiver behind a reverse proxy, as real processes (issue 18): the client is the
rightmost untrusted X-Forwarded-For hop, rejections are counted per client across receiver
processes, /metrics has its own port, and the 16 KiB request-head cap is real."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from tests.fixtures.servers import RedisServer
from worker.devtools import Proc, free_port, http_ok
from worker.receiver.clients import SharedRejectLimiter
from worker.receiver.limits import MAX_HEADER_BYTES, RejectLimiter

TOKEN = "tok-proxy-0001"
LIMIT = 3
NAMESPACE = "proxytest:"
PROXY = "127.0.0.2"  # the reverse proxy: a loopback address that is not 127.0.0.1


@dataclass
class Receiver:
    proc: Proc
    port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def callback(
        self, tid: str, token: str, forwarded_for: str | None = None, via: str = PROXY
    ) -> int:
        """One callback from ``via`` (the proxy's address by default)."""
        headers = {"x-forwarded-for": forwarded_for} if forwarded_for is not None else {}
        query = {"transactionId": tid, "passed": "Y", "subCode": "200", "callbackToken": token}
        transport = httpx.HTTPTransport(local_address=via)
        with httpx.Client(transport=transport) as client:
            return client.get(f"{self.url}/callback", params=query, headers=headers).status_code


@pytest.fixture(scope="module")
def receivers(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Receiver]]:
    """Two receiver processes on one Redis, behind a proxy at ``PROXY`` (the test)."""
    logs = Path(tmp_path_factory.mktemp("receivers"))
    env = {
        "IDV_REDIS_URL": redis_server.url,
        "IDV_NAMESPACE": NAMESPACE,
        "IDV_CALLBACK_TOKENS": TOKEN,
        "IDV_RECEIVER_TRUSTED_PROXIES": f"{PROXY}/32,10.0.0.0/8",
        "IDV_RECEIVER_REJECT_LIMIT": str(LIMIT),
        "IDV_RECEIVER_REJECT_WINDOW_S": "300",
    }
    out: list[Receiver] = []
    try:
        for n in range(2):
            port, metrics_port = free_port(), free_port()
            cmd = [sys.executable, "-m", "worker", "receiver", "--port", str(port),
                   "--metrics-port", str(metrics_port)]  # fmt: skip
            proc = Proc(f"receiver{n}", cmd, env, logs / f"receiver{n}.log")
            proc.start_ready(http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=60)
            out.append(Receiver(proc, port, metrics_port))
        yield out
    finally:
        for receiver in out:
            receiver.proc.stop(timeout=10)


def test_the_client_is_the_rightmost_untrusted_forwarded_hop(receivers: list[Receiver]) -> None:
    one = receivers[0]
    for _ in range(LIMIT):
        assert one.callback("hkproxy01", "wrong", forwarded_for="203.0.113.6") == 403
    assert one.callback("hkproxy01", "wrong", forwarded_for="203.0.113.6") == 429
    # The provider, through the same proxy, is another client: its genuine callback is taken.
    assert one.callback("hkproxy02" + "0" * 20, TOKEN, forwarded_for="198.51.100.7") == 200
    # A client cannot pick its address by writing hops on the left of the chain, nor hide
    # behind one more trusted proxy.
    assert one.callback("hkproxy01", "wrong", forwarded_for="198.51.100.7, 203.0.113.6") == 429
    assert one.callback("hkproxy01", "w", forwarded_for="203.0.113.6, 10.1.2.3") == 429


def test_forwarded_for_from_an_untrusted_peer_is_ignored(receivers: list[Receiver]) -> None:
    one = receivers[0]
    for n in range(LIMIT):
        # A direct caller writing a new X-Forwarded-For each time is still one client.
        assert one.callback("hkproxy04", "wrong", f"192.0.2.{n}", via="127.0.0.1") == 403
    assert one.callback("hkproxy04", "wrong", "192.0.2.99", via="127.0.0.1") == 429
    # ... and the proxy's other clients are not blocked by it.
    assert one.callback("hkproxy05" + "0" * 20, TOKEN, forwarded_for="192.0.2.1") == 200


def test_rejections_are_counted_per_client_across_receiver_processes(
    receivers: list[Receiver],
) -> None:
    one, two = receivers
    client = "203.0.113.50"
    assert one.callback("hkproxy03", "wrong", forwarded_for=client) == 403
    assert one.callback("hkproxy03", "wrong", forwarded_for=client) == 403
    assert two.callback("hkproxy03", "wrong", forwarded_for=client) == 403
    # The limit is per client, not per process: the second process refuses the fourth.
    assert two.callback("hkproxy03", "wrong", forwarded_for=client) == 429
    assert one.callback("hkproxy03", "wrong", forwarded_for=client) == 429
    counters = redis.Redis.from_url(receivers[0].proc.env["IDV_REDIS_URL"])
    key = f"{NAMESPACE}{{receiver}}:rejects:{client}"
    assert int(counters.get(key) or 0) == LIMIT
    assert 0 < counters.pttl(key) <= 300_000
    counters.close()


def test_metrics_are_served_on_their_own_port_only(receivers: list[Receiver]) -> None:
    one = receivers[0]
    assert httpx.get(f"{one.url}/metrics").status_code == 404
    page = httpx.get(f"http://127.0.0.1:{one.metrics_port}/metrics")
    assert page.status_code == 200
    assert "# TYPE idv_callbacks_total counter" in page.text
    assert httpx.get(f"http://127.0.0.1:{one.metrics_port}/callback").status_code == 404


def _head(size: int) -> bytes:
    """A GET /healthz request whose head (through the blank line) is exactly ``size`` bytes."""
    start = b"GET /healthz HTTP/1.1\r\nHost: r\r\nConnection: close\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def _send(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_request_heads_are_capped_at_16_kib(receivers: list[Receiver]) -> None:
    port = receivers[0].port
    assert len(_head(MAX_HEADER_BYTES)) == MAX_HEADER_BYTES == 16 * 1024
    assert _send(port, _head(MAX_HEADER_BYTES)).startswith(b"HTTP/1.1 200")
    refused = _send(port, _head(MAX_HEADER_BYTES + 1))
    assert refused == b"" or refused.startswith(b"HTTP/1.1 431")
    assert _send(port, _head(60_000)).startswith(b"HTTP/1.1 431")
    # The head cut into small writes is counted the same way.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = _head(MAX_HEADER_BYTES + 1)
        for i in range(0, len(head), 1000):
            sock.sendall(head[i : i + 1000])
        assert sock.recv(65536).startswith(b"HTTP/1.1 431")


def test_the_shared_count_falls_back_to_the_process_when_redis_is_down() -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.5)
    limiter = SharedRejectLimiter(down, NAMESPACE, RejectLimiter(2, 60))
    assert not limiter.blocked("2001:db8::1")
    limiter.rejected("2001:db8::1")
    limiter.rejected("2001:db8::2")  # the same /64: the same client
    assert limiter.blocked("2001:db8::3")
    assert not limiter.blocked("2001:db8:1::1")
