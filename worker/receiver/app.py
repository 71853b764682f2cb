"""The callback receiver: a small ASGI application that takes provider callbacks and answers fast.

Routes::

    GET|POST <IDV_CALLBACK_PATH>   (default /callback) provider callback, query or form body
    GET      /healthz              200 when Redis answers, else 503
    GET      /metrics              only with IDV_METRICS_ON_CALLBACK_PORT=true: every process's
                                   metrics (shared in Redis) and the lane queues, Prometheus
                                   text or OpenMetrics (Accept); 503 if Redis fails. By default
                                   they are served on their own port (``worker.receiver.metrics``,
                                   IDV_METRICS_PORT), never to the callback's public.

A callback is checked, de-duplicated and enqueued by ``worker.onboarding.CallbackIntake``; the
receiver never calls the provider. Answers: 200 ``accepted`` or ``duplicate`` (the provider must
stop resending either way), 403 wrong or missing ``callbackToken`` (metric
``idv_callbacks_total{outcome="forbidden"}``), 400 malformed (a message naming the parameter,
never its value), 413 larger than ``IDV_CALLBACK_MAX_BYTES``, 415 a body that is not a form,
503 Redis/broker unavailable (the provider resends; the callback was not marked as seen),
408 a body that did not arrive within ``IDV_RECEIVER_READ_TIMEOUT_S``, 429 an address that had
``IDV_RECEIVER_REJECT_LIMIT`` callbacks rejected (400/403/413/415) within
``IDV_RECEIVER_REJECT_WINDOW_S`` (counted in Redis across receiver processes, in process while
Redis fails; behind a reverse proxy the client is the rightmost ``X-Forwarded-For`` hop that is
not one of ``IDV_RECEIVER_TRUSTED_PROXIES``: ``worker.receiver.clients``).

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
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import redis

from worker.observability import MetricsExporter, MetricsUnavailable, RedisMetrics, get_logger
from worker.onboarding import CallbackIntake, CallbackRejected
from worker.receiver.clients import ClientAddress, SharedRejectLimiter
from worker.receiver.http import (
    Receive,
    Scope,
    Send,
    _parse,
    _read_body,
    _Reply,
    _respond,
)
from worker.receiver.limits import RejectLimiter
from worker.receiver.metrics import serve_metrics
from worker.settings import Settings, load_settings
from worker.wiring import ReceiverParts, build_receiver

if TYPE_CHECKING:
    from celery import Celery

log = get_logger("receiver")

_FORM_TYPES = ("application/x-www-form-urlencoded", "")
_REJECTED = frozenset({400, 403, 413, 415})
_RETRY_AFTER = {"retry-after": "60"}


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
        self._parts: ReceiverParts | None = None
        self._redis: redis.Redis | None = None
        self._celery: Celery | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._intake: CallbackIntake | None = None
        self._metrics: RedisMetrics | None = None
        self._exporter: MetricsExporter | None = None
        self._lock = threading.Lock()
        self.rejects = RejectLimiter(
            settings.receiver.receiver_reject_limit, settings.receiver.receiver_reject_window_s
        )
        self.clients = ClientAddress(settings.receiver.receiver_trusted_proxies)
        self._shared_rejects: SharedRejectLimiter | None = None

    # -------------------------------------------------------------- lifecycle

    def startup(self) -> None:
        """Create the Redis pool, the broker producer and the thread pool (idempotent)."""
        with self._lock:
            if self._intake is not None:
                return
            parts = build_receiver(
                self.settings,
                threads=self._threads,
                redis=self._given_redis,
                app=self._given_celery,
            )
            self._parts, self._redis, self._celery = parts, parts.redis, parts.app
            self._metrics = parts.metrics
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="receiver")
            self._intake = parts.intake
            self._shared_rejects = SharedRejectLimiter(
                parts.redis, self.settings.redis.namespace, self.rejects
            )
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
            if self._parts is not None:
                self._parts.close()
                self._parts = None
            self._redis = None
            self._exporter = None
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
        if (path.rstrip("/") or "/") == self.settings.callbacks.callback_path:
            if method not in ("GET", "POST"):
                await _respond(send, 405, {"error": "use GET or POST"}, allow="GET, POST")
                return
            await self._callback(scope, receive, send)
        elif path == "/healthz" and method in ("GET", "HEAD"):
            await self._healthz(send)
        elif (
            path == "/metrics"
            and method in ("GET", "HEAD")
            and self.settings.receiver.metrics_on_callback_port
        ):
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

        def page(accept: str) -> tuple[bytes, str]:
            with self._lock:
                if self._exporter is None:
                    if self._parts is None:
                        raise MetricsUnavailable("receiver not started")
                    self._exporter = self._parts.exporter(self._given_redis)
            return self._exporter.render(accept)

        await serve_metrics(scope, send, page, self._run)

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
        address = self._client_of(scope)
        self._ready()
        limiter = self._shared_rejects or self.rejects
        if await self._run(limiter.blocked, address):
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
                # After the answer went out: the count is in Redis before the next request.
                await self._run(limiter.rejected, address)
            elapsed = time.monotonic() - started
            self._observe(elapsed, outcome)

    def _client_of(self, scope: Scope) -> str:
        """The client's address: the peer, or behind trusted proxies X-Forwarded-For's hop."""
        peer = (scope.get("client") or (None, 0))[0]
        forwarded = [
            v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"x-forwarded-for"
        ]
        return self.clients.of(peer, forwarded)

    async def _read_params(self, scope: Scope, receive: Receive) -> list[tuple[str, str]]:
        limit = self.settings.callbacks.callback_max_bytes
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
                receive, limit - len(query), self.settings.receiver.receiver_read_timeout_s
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


def create_receiver_app(settings: Settings | None = None) -> CallbackReceiver:
    """The receiver application (an ASGI factory for uvicorn ``--factory`` and gunicorn)."""
    return CallbackReceiver(settings or load_settings())
