"""The metrics server of ``idv-worker receiver``: ``GET /metrics`` on its own port.

Metrics name queues, buckets and outcomes: nothing for the callback's public. By default the
receiver serves them only here, on ``IDV_METRICS_PORT`` (the receiver's bind address), from a
second uvicorn server in the same process (``start_metrics_server``);
``IDV_METRICS_ON_CALLBACK_PORT=true`` also serves them on the callback port. Every process's
metrics are kept in Redis, so one server per receiver shows the whole system.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from worker.observability import MetricsExporter, MetricsUnavailable, get_logger
from worker.receiver.http import Receive, Scope, Send, _respond, _respond_text
from worker.settings import Settings
from worker.wiring import build_exporter

log = get_logger("receiver")

Render = Callable[[str], tuple[bytes, str]]
Runner = Callable[..., Awaitable[Any]]


async def serve_metrics(scope: Scope, send: Send, render: Render, run: Runner) -> None:
    """Answer one ``GET /metrics``: ``render(accept)`` off the event loop; 503 if Redis fails."""
    accept = dict(scope.get("headers") or []).get(b"accept", b"").decode("latin-1")
    try:
        body, content_type = await run(render, accept)
    except MetricsUnavailable as exc:
        log.warning("metrics unavailable: %s", exc.reason)
        await _respond_text(send, 503, f"{exc.reason}\n", "text/plain; charset=utf-8")
        return
    await _respond_text(send, 200, body, content_type)


class MetricsApp:
    """ASGI application serving ``GET /metrics`` only (404 for anything else)."""

    def __init__(self, settings: Settings, exporter: Callable[[], MetricsExporter]) -> None:
        self.settings = settings
        self._make = exporter
        self._exporter: MetricsExporter | None = None
        self._lock = threading.Lock()

    def _render(self, accept: str) -> tuple[bytes, str]:
        with self._lock:
            if self._exporter is None:
                self._exporter = self._make()
        return self._exporter.render(accept)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("path") == "/metrics" and scope.get("method") in ("GET", "HEAD"):
            await serve_metrics(scope, send, self._render, self._run)
        else:
            await _respond(send, 404, {"error": "not found"})

    def close(self) -> None:
        with self._lock:
            if self._exporter is not None:
                self._exporter.close()
                self._exporter = None


def start_metrics_server(settings: Settings, host: str, port: int, log_level: str) -> Any:
    """Serve ``MetricsApp`` on ``host:port`` from a daemon thread; returns the uvicorn server
    (``should_exit = True`` stops it)."""
    import uvicorn  # the serving process only, as in worker.receiver.limits

    app = MetricsApp(settings, lambda: build_exporter(settings))
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="off", log_level=log_level, access_log=False,
        server_header=False, proxy_headers=False,
    )  # fmt: skip
    server = uvicorn.Server(config)

    def serve() -> None:
        try:
            server.run()
        finally:
            app.close()

    threading.Thread(target=serve, name="metrics-server", daemon=True).start()
    return server
