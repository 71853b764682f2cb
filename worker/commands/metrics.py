"""``idv-worker metrics``: print every metric (shared in Redis) in the Prometheus text format."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``metrics``."""
    parser = subparsers.add_parser(
        "metrics", help="print the metrics of every process (Prometheus text format)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Read the shared metrics from Redis and print them."""
    import redis

    from worker.observability import RedisMetrics
    from worker.settings import load_settings

    settings = load_settings()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        sys.stdout.write(RedisMetrics(client, settings.namespace).render_prometheus())
    except redis.RedisError as exc:
        print(f"idv-worker metrics: Redis unavailable ({type(exc).__name__})", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0
