"""Redis helpers written once: client construction, reply decoding, Lua scripts from files.

Every Redis client of the project is built by ``connect`` so they share one set of timeouts;
the limiter asks for a ``fail_fast`` client (short timeouts, one retry) because it must fail
closed at once rather than hold a provider call.

Failover. With ``IDV_REDIS_SENTINELS`` (``redis_target``) ``connect`` returns
``Sentinel(...).master_for(...)``: each new connection asks the sentinels for the current
primary. Without them (a fixed address, or a managed Redis whose failover moves a DNS name)
clients reconnect by themselves: a broken connection is dropped and the command retried on a
new one (``Retry`` on connection errors), idle connections are health-checked, and a
``READONLY`` reply (still connected to a primary that was demoted) drops the connection as a
connection error, so the retry resolves the name again and reaches the new primary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import redis
from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.retry import Retry
from redis.sentinel import Sentinel

if TYPE_CHECKING:
    from worker.settings import BrokerSettings, RedisSettings

SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 30
# Default retries on a connection error: ~0.1 + 0.2 + 0.4 s of backoff rides over a dropped
# connection or the last moments of a failover without holding a caller for long.
RETRIES = 3


@dataclass(frozen=True)
class RedisTarget:
    """Where the project's Redis is: a URL, or a primary that sentinels monitor.

    With ``sentinels``, ``url`` gives only the database, the credentials and TLS (``rediss``)
    of the primary; its host and port are not used.
    """

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)


def redis_target(settings: RedisSettings) -> RedisTarget:
    """The Redis of ``IDV_REDIS_URL``, through ``IDV_REDIS_SENTINELS`` when they are set."""
    password = settings.redis_sentinel_password
    return RedisTarget(
        settings.redis_url,
        tuple(settings.sentinel_addresses()),
        settings.redis_sentinel_master,
        password.get_secret_value() or None if password is not None else None,
    )


def broker_target(settings: RedisSettings, broker: BrokerSettings) -> RedisTarget:
    """The broker's Redis: ``IDV_BROKER_URL`` when it names another one, else ``redis_target``."""
    url = broker.broker_url
    if url and url != settings.redis_url:
        return RedisTarget(url)
    return redis_target(settings)


class ReconnectingConnection(redis.Connection):
    """A connection that treats ``READONLY`` as a lost connection: the server it reached was
    a primary and is now a replica (a managed failover moved the name to a new primary)."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)  # type: ignore[no-untyped-call]
        except ReadOnlyError:
            self.disconnect()  # type: ignore[no-untyped-call]
            raise RedisConnectionError("the Redis primary was demoted to a replica") from None


class ReconnectingSSLConnection(ReconnectingConnection, redis.SSLConnection):
    """``ReconnectingConnection`` over TLS (``rediss://``)."""


def connect(
    target: str | RedisTarget,
    *,
    fail_fast: bool = False,
    socket_timeout: float | None = None,
    retries: int | None = None,
    max_connections: int = 64,
) -> Redis:
    """A client for ``target`` (a URL, or a ``RedisTarget``) with the project's timeouts.

    ``fail_fast``: 1 s timeouts (or ``socket_timeout``) and one immediate retry, for callers
    that must fail closed at once (the limiter). ``retries``: retries on a connection error
    (default ``RETRIES`` with a short backoff; 0 for a scrape that must cost at most one
    timeout).
    """
    if isinstance(target, str):
        target = RedisTarget(target)
    if fail_fast:
        socket_timeout = socket_timeout or 1.0
        retries = 1 if retries is None else retries
    timeout = socket_timeout or SOCKET_TIMEOUT_S
    connect_timeout = min(timeout, CONNECT_TIMEOUT_S) if not fail_fast else timeout
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": connect_timeout,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "max_connections": max_connections,
        "retry": _retry(retries),
    }
    if target.sentinels:
        return _sentinel_client(target, options)
    scheme = urlsplit(target.url).scheme
    if scheme == "redis":
        options["connection_class"] = ReconnectingConnection
    elif scheme == "rediss":
        options["connection_class"] = ReconnectingSSLConnection
    return redis.Redis.from_url(target.url, **options)


def _retry(retries: int | None) -> Retry:
    if retries is None:
        return Retry(ExponentialWithJitterBackoff(base=0.1, cap=1.0), RETRIES)
    return Retry(NoBackoff(), retries)


class SentinelRedis(Redis):
    """A client of the primary a ``Sentinel`` names; ``close`` closes the sentinel clients too."""

    sentinel_manager: Sentinel | None = None

    def close(self) -> None:
        super().close()
        if self.sentinel_manager is not None:
            for client in self.sentinel_manager.sentinels:
                client.close()


def _sentinel_client(target: RedisTarget, options: dict[str, Any]) -> Redis:
    if target.master is None:
        raise ValueError("a Redis behind sentinels needs the master name")
    url: dict[str, Any] = parse_url(target.url)  # type: ignore[no-untyped-call]
    for name in ("host", "port", "path", "connection_class"):
        url.pop(name, None)
    if urlsplit(target.url).scheme == "rediss":
        url["ssl"] = True
    sentinel_options: dict[str, Any] = {
        "socket_timeout": options["socket_timeout"],
        "socket_connect_timeout": options["socket_connect_timeout"],
    }
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    client: SentinelRedis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master, redis_class=SentinelRedis, **url, **options
    )
    client.sentinel_manager = sentinel
    return client


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


# A script whose text says this gets its folder's ``prelude.lua`` (shared helpers) prepended.
NEEDS_PRELUDE = "Needs prelude.lua."
PRELUDE = "prelude"


@cache
def _lua_folder(package: str) -> dict[str, str]:
    """Every ``<package>/lua/*.lua`` file by name (without ``.lua``)."""
    folder = resources.files(package).joinpath("lua")
    return {
        entry.name.removesuffix(".lua"): entry.read_text("utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua")
    }


@cache
def lua_script(package: str, name: str) -> str:
    """The source of ``<package>/lua/<name>.lua``, the one loader of every Lua script.

    A script that says ``Needs prelude.lua.`` gets the folder's ``prelude.lua`` prepended;
    a name that is not a script of the folder (or is the prelude itself) is a ``ValueError``.
    """
    scripts = _lua_folder(package)
    if name == PRELUDE or name not in scripts:
        raise ValueError(f"unknown Lua script {name!r} of {package}")
    body = scripts[name]
    if NEEDS_PRELUDE not in body:
        return body
    return scripts[PRELUDE] + "\n" + body
