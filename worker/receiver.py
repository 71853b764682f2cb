"""The callback receiver: a small ASGI application that takes provider callbacks and answers fast.

Routes::

    GET|POST <IDV_CALLBACK_PATH>   (default /callback) provider callback, query or form body
    GET      /healthz              200 when Redis answers, else 503
    GET      /metrics              every process's metrics (shared in Redis) and the lane queues,
                                   Prometheus text or OpenMetrics (Accept); 503 if Redis fails

A callback is checked, de-duplicated and enqueued by ``worker.onboarding.CallbackIntake``; the
receiver never calls the provider. Answers: 200 ``accepted`` or ``duplicate`` (the provider must
stop resending either way), 403 wrong or missing ``callbackToken`` (metric
``idv_callbacks_total{outcome="forbidden"}``), 400 malformed (a message naming the parameter,
never its value), 413 larger than ``IDV_CALLBACK_MAX_BYTES``, 415 a body that is not a form,
503 Redis/broker unavailable (the provider resends; the callback was not marked as seen),
408 a body that did not arrive within ``IDV_RECEIVER_READ_TIMEOUT_S``, 429 an address that had
``IDV_RECEIVER_REJECT_LIMIT`` callbacks rejected (400/403/413/415) within
``IDV_RECEIVER_REJECT_WINDOW_S`` (counted in process, per receiver process: no Redis round trip
for an abusive client; behind a proxy the address comes from ``X-Forwarded-For`` of trusted
proxies, uvicorn's ``--forwarded-allow-ips``).

``idv-worker receiver`` also closes a connection whose request headers are not complete within
the read timeout (``guarded_h11_protocol``), caps concurrent connections
(``IDV_RECEIVER_LIMIT_CONCURRENCY``, 503 above), idle keep-alive time and header size.

Blocking work (Redis, the broker) runs on a small thread pool so the event loop keeps answering.

Run it::

    idv-worker receiver --host 0.0.0.0 --port 8080
    uvicorn --factory worker.receiver:create_receiver_app --host 0.0.0.0 --port 8080
    gunicorn -k uvicorn.workers.UvicornWorker -w 4 -b 0.0.0.0:8080 \\
        'worker.receiver:create_receiver_app()'

Each process builds its own Redis pool and broker connection at start-up (ASGI lifespan), from
``IDV_*`` settings.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import redis

from worker.observability import MetricsExporter, MetricsUnavailable, RedisMetrics, get_logger
from worker.onboarding import CallbackIntake, CallbackRejected
from worker.queues import ALL_QUEUES
from worker.redisio import connect, redis_target
from worker.runtime import Runtime
from worker.settings import Settings, load_settings

if TYPE_CHECKING:
    from celery import Celery

log = get_logger("receiver")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_FIELDS = 32
MAX_HEADER_BYTES = 16 * 1024
MAX_TRACKED_ADDRESSES = 10_000
_FORM_TYPES = ("application/x-www-form-urlencoded", "")
_REJECTED = frozenset({400, 403, 413, 415})
_RETRY_AFTER = {"retry-after": "60"}


class RejectLimiter:
    """Rejected callbacks per client address in a sliding window (in process, bounded)."""

    def __init__(
        self, limit: int, window_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        hits = self._hits.get(address)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if not hits:
            del self._hits[address]
            return None
        return hits

    def blocked(self, address: str) -> bool:
        """Whether ``address`` used up its rejections in the window."""
        with self._lock:
            hits = self._recent(address, self._clock())
            return hits is not None and len(hits) >= self.limit

    def rejected(self, address: str) -> None:
        """Count one rejected request of ``address``."""
        with self._lock:
            now = self._clock()
            hits = self._recent(address, now)
            if hits is None:
                hits = self._hits[address] = deque(maxlen=self.limit)
                while len(self._hits) > MAX_TRACKED_ADDRESSES:
                    self._hits.popitem(last=False)
            hits.append(now)
            self._hits.move_to_end(address)


def guarded_h11_protocol(read_timeout_s: float) -> type[Any]:
    """uvicorn's h11 protocol, closing a connection whose request headers take too long.

    uvicorn bounds idle keep-alive connections but not a request that stops half-way through
    its headers (slowloris); this arms a timer when the connection opens and after every
    response, and closes the connection if no complete request head arrived by then. A
    request whose head arrived is bounded by the app's body read timeout instead.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_head_timer()

        def _arm_head_timer(self) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            self._head_timer = self.loop.call_later(read_timeout_s, self._head_timeout)

        def _head_timeout(self) -> None:
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            timer = getattr(self, "_head_timer", None)
            if timer is not None:
                timer.cancel()
            super().connection_lost(exc)

    return GuardedH11Protocol


class _Reply(Exception):
    """An early answer (413, 415, 400) produced while reading the request."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        self.status = status
        self.outcome = outcome
        self.reason = reason
        super().__init__(reason)


class CallbackReceiver:
    """ASGI application (see the module docstring). Build it with ``create_receiver_app``.

    ``redis_client`` and ``celery`` default to ones built from ``settings`` at start-up.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        redis_client: redis.Redis | None = None,
        celery: Celery | None = None,
        threads: int = 4,
    ) -> None:
        self.settings = settings
        self._given_redis = redis_client
        self._given_celery = celery
        self._threads = threads
        self._runtime: Runtime | None = None
        self._redis: redis.Redis | None = None
        self._celery: Celery | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._intake: CallbackIntake | None = None
        self._metrics: RedisMetrics | None = None
        self._exporter: MetricsExporter | None = None
        self._lock = threading.Lock()
        self.rejects = RejectLimiter(
            settings.receiver_reject_limit, settings.receiver_reject_window_s
        )

    # -------------------------------------------------------------- lifecycle

    def startup(self) -> None:
        """Create the Redis pool, the broker producer and the thread pool (idempotent)."""
        with self._lock:
            if self._intake is not None:
                return
            # Short timeouts: the provider is answered within seconds either way.
            client = self._given_redis or connect(
                redis_target(self.settings),
                socket_timeout=2.0,
                max_connections=max(8, self._threads * 2),
            )
            runtime = Runtime(self.settings, app=self._given_celery, redis_client=client)
            self._runtime, self._redis, self._celery = runtime, client, runtime.app
            self._metrics = runtime.metrics
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="receiver")
            self._intake = runtime.intake
            if not self._intake.tokens_configured:
                log.error("no IDV_CALLBACK_TOKENS configured: every callback is refused (403)")
        self._warm()

    def _warm(self) -> None:
        """Open Redis and broker connections for every thread now, not on the first callbacks.

        A cold publish pays for finalising the Celery app and connecting (~100 ms); the
        provider's first callbacks after a deploy should not. Failures are only logged: the
        receiver still starts and ``/healthz`` reports Redis.
        """
        assert self._executor is not None
        assert self._celery is not None
        assert self._redis is not None
        celery, client = self._celery, self._redis
        barrier = threading.Barrier(self._threads)

        def hold_a_producer(_: int) -> None:
            # ``send_task`` builds the (disabled) result backend lazily, once per thread.
            celery.backend  # noqa: B018
            with celery.producer_or_acquire() as producer:
                producer.connection.ensure_connection(max_retries=1)
                client.ping()
                # Held together, so the pool ends up with one warm producer per thread.
                barrier.wait(timeout=5)

        try:
            list(self._executor.map(hold_a_producer, range(self._threads)))
        except Exception as exc:
            log.warning("receiver warm-up failed (%s); connecting on first use", type(exc).__name__)

    def shutdown(self) -> None:
        """Close what ``startup`` created."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None
            if self._given_redis is None and self._redis is not None:
                self._redis.close()
            self._redis = None
            self._intake = None
            if self._exporter is not None:
                self._exporter.close()
                self._exporter = None

    def _ready(self) -> tuple[CallbackIntake, RedisMetrics, ThreadPoolExecutor]:
        if self._intake is None:
            self.startup()
        assert self._intake is not None
        assert self._metrics is not None
        assert self._executor is not None
        return self._intake, self._metrics, self._executor

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        executor = self._ready()[2]
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

    def _background(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._ready()[2].submit(fn, *args, **kwargs)

    # -------------------------------------------------------------- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "/")
        method: str = scope.get("method", "GET")
        if (path.rstrip("/") or "/") == self.settings.callback_path:
            if method not in ("GET", "POST"):
                await _respond(send, 405, {"error": "use GET or POST"}, allow="GET, POST")
                return
            await self._callback(scope, receive, send)
        elif path == "/healthz" and method in ("GET", "HEAD"):
            await self._healthz(send)
        elif path == "/metrics" and method in ("GET", "HEAD"):
            await self._metrics_page(scope, send)
        else:
            await _respond(send, 404, {"error": "not found"})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await asyncio.get_running_loop().run_in_executor(None, self.startup)
                except Exception as exc:
                    log.exception("receiver start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.get_running_loop().run_in_executor(None, self.shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _metrics_page(self, scope: Scope, send: Send) -> None:
        """Every process's metrics and the lane queues; 503 and one log line if Redis fails."""
        accept = dict(scope.get("headers") or []).get(b"accept", b"").decode("latin-1")

        def page() -> tuple[bytes, str]:
            with self._lock:
                if self._exporter is None:
                    injected = self._given_redis
                    self._exporter = MetricsExporter(self.settings, ALL_QUEUES, client=injected)
            return self._exporter.render(accept)

        try:
            body, content_type = await self._run(page)
        except MetricsUnavailable as exc:
            log.warning("metrics unavailable: %s", exc.reason)
            await _respond_text(send, 503, f"{exc.reason}\n", "text/plain; charset=utf-8")
            return
        await _respond_text(send, 200, body, content_type)

    async def _healthz(self, send: Send) -> None:
        def ping() -> bool:
            self._ready()
            assert self._redis is not None
            try:
                return bool(self._redis.ping())
            except redis.RedisError:
                return False

        ok = await self._run(ping)
        await _respond(send, 200 if ok else 503, {"status": "ok" if ok else "redis unavailable"})

    async def _callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.monotonic()
        received_at = time.time()
        outcome = "error"
        address = (scope.get("client") or ("unknown", 0))[0]
        if self.rejects.blocked(address):
            # No parsing, no Redis: an address that keeps failing gets nothing but this.
            self._count("rate_limited")
            await _respond(send, 429, {"error": "too many rejected requests"}, **_RETRY_AFTER)
            return
        status = 500
        try:
            params = await self._read_params(scope, receive)
            intake = self._ready()[0]
            submission = await self._run(intake.submit, params, received_at=received_at)
            outcome, status = submission.status, 200
            await _respond(send, 200, {"status": submission.status})
        except _Reply as reply:
            outcome, status = reply.outcome, reply.status
            self._count(reply.outcome)
            await _respond(send, reply.status, {"error": reply.reason})
        except CallbackRejected as exc:  # counted by the intake
            outcome, status = exc.outcome, exc.status
            await _respond(send, exc.status, {"error": exc.reason})
        except Exception:
            log.exception("callback handling failed")
            self._count("error")
            await _respond(send, 500, {"error": "internal error"})
        finally:
            if status in _REJECTED:
                self.rejects.rejected(address)
            elapsed = time.monotonic() - started
            self._observe(elapsed, outcome)

    async def _read_params(self, scope: Scope, receive: Receive) -> list[tuple[str, str]]:
        limit = self.settings.callback_max_bytes
        query: bytes = scope.get("query_string", b"")
        if len(query) > limit:
            raise _Reply(413, "too_large", f"request larger than {limit} bytes")
        body = b""
        if scope.get("method") == "POST":
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) + len(query) > limit):
                raise _Reply(413, "too_large", f"request larger than {limit} bytes")
            body = await _read_body(
                receive, limit - len(query), self.settings.receiver_read_timeout_s
            )
            if body and ctype not in _FORM_TYPES:
                raise _Reply(415, "invalid", "body must be application/x-www-form-urlencoded")
        try:
            return [
                *_parse(query),
                *_parse(body),
            ]
        except (UnicodeDecodeError, ValueError):
            raise _Reply(400, "invalid", "query or form is not valid UTF-8 form encoding") from None

    def _count(self, outcome: str) -> None:
        self._background(self._ready()[1].incr, "idv_callbacks", outcome=outcome)

    def _observe(self, elapsed: float, outcome: str) -> None:
        # Written after the answer went out, off the event loop: metrics never slow the ack.
        metrics = self._ready()[1]
        self._background(metrics.observe, "idv_callback_ack_seconds", elapsed, outcome=outcome)


def _parse(raw: bytes) -> list[tuple[str, str]]:
    if not raw:
        return []
    text = raw.decode("utf-8", errors="strict")
    return parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)


async def _read_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise _Reply(408, "timeout", "request body not received in time") from None
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _Reply(413, "too_large", "request body too large")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(send: Send, status: int, payload: dict[str, Any], **extra: str) -> None:
    body = json.dumps(payload).encode()
    await _respond_text(send, status, body, "application/json", **extra)


async def _respond_text(
    send: Send, status: int, body: str | bytes, content_type: str, **extra: str
) -> None:
    data = body.encode() if isinstance(body, str) else body
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(data)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def create_receiver_app(settings: Settings | None = None) -> CallbackReceiver:
    """The receiver application (an ASGI factory for uvicorn ``--factory`` and gunicorn)."""
    return CallbackReceiver(settings or load_settings())
