"""Redis helpers written once: client construction, reply decoding, Lua scripts from files.

Every Redis client of the project is built by ``connect`` so they share one set of timeouts;
the limiter asks for a ``fail_fast`` client (short timeouts, one retry) because it must fail
closed at once rather than hold a provider call.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 30


def connect(
    url: str,
    *,
    fail_fast: bool = False,
    socket_timeout: float | None = None,
    retries: int | None = None,
    max_connections: int = 64,
) -> Redis:
    """A client for ``url`` with the project's timeouts.

    ``fail_fast``: 1 s timeouts (or ``socket_timeout``) and one immediate retry, for callers
    that must fail closed at once (the limiter). ``retries``: immediate retries on a connection
    error (default: redis-py's own policy; 0 for a scrape that must cost at most one timeout).
    """
    if fail_fast:
        socket_timeout = socket_timeout or 1.0
        retries = 1 if retries is None else retries
    timeout = socket_timeout or SOCKET_TIMEOUT_S
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": min(timeout, CONNECT_TIMEOUT_S) if not fail_fast else timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "max_connections": max_connections,
    }
    if retries is not None:
        options["retry"] = Retry(NoBackoff(), retries)
    return redis.Redis.from_url(url, **options)


def text(value: Any) -> str:
    """A reply value as ``str`` (bytes decoded as UTF-8; None as the empty string)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def optional_text(value: Any) -> str | None:
    """A reply value as ``str``, or None for a missing value."""
    return None if value is None else text(value)


def number(value: Any) -> float:
    """A numeric reply value (scripts send numbers as strings)."""
    return float(text(value))


def text_map(reply: Any) -> dict[str, str]:
    """An ``HGETALL``-style reply (a dict, or a flat list of pairs) as ``{str: str}``."""
    if isinstance(reply, dict):
        return {text(k): text(v) for k, v in reply.items()}
    items = list(reply or [])
    return {text(items[i]): text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


@cache
def lua_script(package: str, name: str) -> str:
    """The source of ``<package>/lua/<name>.lua``."""
    return resources.files(package).joinpath("lua").joinpath(f"{name}.lua").read_text("utf-8")
