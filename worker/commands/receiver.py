"""``idv-worker receiver``: run the callback receiver (ASGI, under uvicorn), and its metrics
server on ``IDV_METRICS_PORT`` (``worker.receiver.metrics``).

The client address is worked out by the receiver from ``IDV_RECEIVER_TRUSTED_PROXIES``
(``worker.receiver.clients``); uvicorn's own proxy-header handling is off.

For several processes behind one port, run it under gunicorn instead::

    gunicorn -k uvicorn.workers.UvicornWorker -w 4 -b 0.0.0.0:8080 \\
        'worker.receiver:create_receiver_app()'
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from worker.settings import load_settings


def register(subparsers: Any) -> None:
    """Add ``receiver``."""
    parser = subparsers.add_parser(
        "receiver",
        help="run the provider callback receiver (HTTP)",
        description="Take provider callbacks, check and de-duplicate them, enqueue the work.",
    )
    parser.add_argument(
        "--host", default=None, metavar="HOST", help="bind address (default IDV_RECEIVER_HOST)"
    )
    parser.add_argument("--port", type=int, default=None, help="port (default IDV_RECEIVER_PORT)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port of GET /metrics (default IDV_METRICS_PORT)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes (uvicorn workers), default 1"
    )
    parser.add_argument("--log-level", default=None, metavar="LEVEL", help="default IDV_LOG_LEVEL")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Start uvicorn with the receiver factory; refuses to start without callback tokens, or
    (``IDV_MODE=production``) on a Redis that would lose data."""
    import uvicorn

    from worker.observability import configure_logging, init_sentry
    from worker.receiver import MAX_HEADER_BYTES, guarded_h11_protocol
    from worker.receiver.metrics import start_metrics_server

    settings = load_settings()
    if not settings.callbacks.callback_tokens and settings.callbacks.callback_token_secret is None:
        print(
            "idv-worker receiver: IDV_CALLBACK_TOKENS and IDV_CALLBACK_TOKEN_SECRET are empty; "
            "every callback would be refused. Set the callbackToken(s) you pass to Initialize "
            "(comma-separated) or the secret per-flow tokens are derived from.",
            file=sys.stderr,
        )
        return 2
    from worker.wiring import EXIT_MISCONFIGURED, redis_refusal

    refusal = redis_refusal(settings)
    if refusal is not None:
        print(f"idv-worker receiver: refusing to start: {refusal}", file=sys.stderr)
        return EXIT_MISCONFIGURED
    level = (args.log_level or settings.observability.log_level).lower()
    configure_logging(level.upper(), settings.observability.log_format)
    init_sentry(settings.observability)
    host = args.host or settings.receiver.receiver_host
    metrics_port = (
        settings.receiver.metrics_port if args.metrics_port is None else args.metrics_port
    )
    metrics = start_metrics_server(settings, host, metrics_port, level)
    try:
        uvicorn.run(
            "worker.receiver:create_receiver_app",
            factory=True,
            host=host,
            port=args.port if args.port is not None else settings.receiver.receiver_port,
            workers=max(1, args.workers),
            log_level=level,
            access_log=False,
            lifespan="on",
            # The receiver follows X-Forwarded-For itself, from IDV_RECEIVER_TRUSTED_PROXIES.
            proxy_headers=False,
            server_header=False,
            # Slow or abusive clients: a half-sent request is closed after the read timeout
            # (headers by the protocol, the body by the app), connections and header sizes
            # capped.
            http=guarded_h11_protocol(settings.receiver.receiver_read_timeout_s),
            limit_concurrency=settings.receiver.receiver_limit_concurrency,
            timeout_keep_alive=max(1, round(settings.receiver.receiver_keep_alive_s)),
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        )
    finally:
        metrics.should_exit = True
    return 0
