"""Redis helpers written once: client construction, reply decoding, Lua scripts from files.

Every Redis client of the project is built by ``connect`` so they share one set of timeouts;
the limiter asks for a ``fail_fast`` client (short timeouts, one retry) because it must fail
closed at once rather than hold a provider call.

Connection policy. Every client, the broker's included (``worker.app`` gives kombu the same
options), reaches Redis as its ``RedisTarget`` says: TLS for ``rediss://`` with the
``IDV_REDIS_TLS_*`` CA, client certificate and verification (``TlsOptions``), the ACL user and
password of the URL, and for the sentinels their own user, password and TLS. ``weaknesses``
names what a target lacks; ``IDV_MODE=production`` refuses to start on any
(``worker.wiring.startup``) unless ``IDV_REDIS_ALLOW_INSECURE`` says so.

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
class TlsOptions:
    """How a TLS connection to Redis checks the server and proves the client (``IDV_REDIS_TLS_*``).

    ``verify``: ``required`` (signed by the CA and naming the host), ``optional`` (signed by
    the CA: Python's clients check the chain whenever a certificate is sent, and a TLS server
    always sends one; the host name is not checked) or ``none``.
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: str = "required"

    def client_options(self) -> dict[str, Any]:
        """redis-py's keyword arguments of a TLS connection, also kombu's ``broker_use_ssl``."""
        options: dict[str, Any] = {
            "ssl_cert_reqs": self.verify,
            "ssl_check_hostname": self.verify == "required",
        }
        for name, value in (
            ("ssl_ca_certs", self.ca_file),
            ("ssl_certfile", self.cert_file),
            ("ssl_keyfile", self.key_file),
        ):
            if value:
                options[name] = value
        return options


@dataclass(frozen=True)
class RedisTarget:
    """Where the project's Redis is and how it is reached: a URL, or a primary that sentinels
    monitor, with the connection policy (TLS, credentials) every client applies.

    TLS is on for a ``rediss://`` URL, with ``tls``; the credentials (ACL user and password)
    come from the URL. With ``sentinels``, ``url`` gives only the database, the credentials
    and TLS of the primary (its host and port are not used); the sentinels themselves are
    reached with ``sentinel_username``/``sentinel_password`` and, when ``sentinel_tls`` (unset:
    as the primary), over TLS with the same ``tls``.
    """

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls: TlsOptions = TlsOptions()
    sentinel_username: str | None = None
    sentinel_tls: bool | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme

    @property
    def uses_tls(self) -> bool:
        """Whether the primary (or the one server of the URL) is reached over TLS."""
        return self.scheme == "rediss"

    @property
    def sentinels_use_tls(self) -> bool:
        return self.uses_tls if self.sentinel_tls is None else self.sentinel_tls

    def authenticated(self) -> bool:
        """Whether the URL carries a password (with or without an ACL user name)."""
        url: dict[str, Any] = parse_url(self.url)  # type: ignore[no-untyped-call]
        return bool(url.get("password"))

    def another(self, url: str) -> RedisTarget:
        """Another Redis (``IDV_BROKER_URL``) reached with the same TLS policy."""
        return RedisTarget(url, tls=self.tls)

    def where(self) -> str:
        """``host:port``, the socket path or the sentinels' master name; never credentials."""
        if self.sentinels:
            return f"primary {self.master!r} of sentinels " + ",".join(
                f"{host}:{port}" for host, port in self.sentinels
            )
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname}:{parts.port or 6379}"

    def weaknesses(self) -> list[str]:
        """What this connection lacks, each as the setting that would add it (empty: TLS with
        a checked certificate and authentication, to the primary and to the sentinels).

        A ``unix://`` socket never leaves the host: it needs authentication, not TLS.
        """
        found = []
        if self.scheme != "unix" and not self.uses_tls:
            found.append("no TLS (a redis:// URL; use rediss://)")
        if not self.authenticated():
            found.append("no authentication (the URL has no password)")
        if self.sentinels and not self.sentinels_use_tls:
            found.append("sentinels without TLS (IDV_REDIS_SENTINEL_TLS)")
        if self.sentinels and not self.sentinel_password:
            found.append("sentinels without authentication (IDV_REDIS_SENTINEL_PASSWORD)")
        uses_tls = self.uses_tls or (bool(self.sentinels) and self.sentinels_use_tls)
        if uses_tls and self.tls.verify == "none":
            found.append("a server certificate that is not checked (IDV_REDIS_TLS_VERIFY=none)")
        return found

    def sentinel_options(self, socket_timeout: float, connect_timeout: float) -> dict[str, Any]:
        """The keyword arguments of the clients of the sentinels themselves."""
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": connect_timeout,
        }
        if self.sentinel_username:
            options["username"] = self.sentinel_username
        if self.sentinel_password:
            options["password"] = self.sentinel_password
        if self.sentinels_use_tls:
            options["ssl"] = True
            options.update(self.tls.client_options())
        return options


def tls_options(settings: RedisSettings) -> TlsOptions:
    """``IDV_REDIS_TLS_*`` as the options of every TLS connection."""
    return TlsOptions(
        settings.redis_tls_ca_file,
        settings.redis_tls_cert_file,
        settings.redis_tls_key_file,
        settings.redis_tls_verify,
    )


def redis_target(settings: RedisSettings) -> RedisTarget:
    """The Redis of ``IDV_REDIS_URL``, through ``IDV_REDIS_SENTINELS`` when they are set."""
    password = settings.redis_sentinel_password
    return RedisTarget(
        settings.redis_url,
        tuple(settings.sentinel_addresses()),
        settings.redis_sentinel_master,
        password.get_secret_value() or None if password is not None else None,
        tls=tls_options(settings),
        sentinel_username=settings.redis_sentinel_username,
        sentinel_tls=settings.redis_sentinel_tls,
    )


def broker_target(settings: RedisSettings, broker: BrokerSettings) -> RedisTarget:
    """The broker's Redis: ``IDV_BROKER_URL`` when it names another one, else ``redis_target``."""
    url = broker.broker_url
    target = redis_target(settings)
    if url and url != settings.redis_url:
        return target.another(url)
    return target


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
        target = RedisTarget(target)  # TLS (rediss://) with the default policy
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
        options.update(target.tls.client_options())
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
    if target.uses_tls:
        url["ssl"] = True
        url.update(target.tls.client_options())
    sentinel_options = target.sentinel_options(
        options["socket_timeout"], options["socket_connect_timeout"]
    )
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
