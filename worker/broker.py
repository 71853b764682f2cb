"""Celery broker transport: kombu's Redis transport, made to survive a Redis restart.

Celery 5.7 (``Consumer.on_connection_error_after_connected``) calls ``Connection.collect()`` and
then ``Connection.close()`` on the broken broker connection. ``collect()`` detaches the kombu
transport (``transport.client = None``) but keeps the default channel, whose first ``close()``
failed on the dead BRPOP socket before the channel was marked closed. The second ``close()``
restores the unacked messages, which needs a new Redis pool, and ``Channel._connparams`` reads
``self.connection.client.hostname`` -> ``AttributeError`` -> not a connection error ->
"Unrecoverable error" -> the worker node exits.

This channel, once its transport is detached:

* does not try to restore unacked messages on close (the broker is unreachable): they stay in
  Redis (``unacked`` hash) and are redelivered after ``visibility_timeout``, as with Celery <= 5.6;
* still lets late acks of tasks that were running across the reconnect reach Redis, with the
  connection parameters it used before (as with Celery <= 5.6, where the old pool survived);
* raises a *connection* error (ignored by kombu/Celery teardown) for anything else.

Use: ``broker_transport = "worker.broker:Transport"`` for ``redis://`` / ``rediss://`` URLs,
``"worker.broker:SentinelTransport"`` for ``sentinel://`` ones (``IDV_REDIS_SENTINELS``): kombu's
Sentinel channel subclasses its Redis channel and, once detached, fails the same way (it reads
the sentinel addresses from ``self.connection.client.alt``); it keeps those too.

Both channels use ``worker.redisio``'s reconnecting connections, so a ``READONLY`` reply (a
primary demoted by a managed failover that moved its DNS name) is a connection error: Celery
reconnects and resolves the name again instead of failing every BRPOP.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kombu.transport import redis as kombu_redis
from redis import exceptions as redis_exceptions
from redis.sentinel import Sentinel

from worker.redisio import ReconnectingConnection, ReconnectingSSLConnection


class Channel(kombu_redis.Channel):
    connection_class = ReconnectingConnection
    connection_class_ssl = ReconnectingSSLConnection
    _saved_connparams: dict[str, Any] | None = None

    def _transport_detached(self) -> bool:
        transport = self.connection
        return transport is None or transport.client is None

    def close(self) -> None:
        if self._transport_detached() and self._qos is not None:
            self._qos.restore_at_shutdown = False
        super().close()

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if not self._transport_detached():
            # Private in kombu (unchanged from 5.4 to 5.7), absent from the type stubs.
            params: dict[str, Any] = super()._connparams(  # type: ignore[misc]
                asynchronous=asynchronous
            )
            if not asynchronous:
                self._saved_connparams = dict(params)
            return params
        if asynchronous or self._saved_connparams is None:
            raise redis_exceptions.ConnectionError(
                "kombu Redis channel used after its transport was closed"
            )
        return dict(self._saved_connparams)


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    # The MRO puts the restart fix of ``Channel`` in front of kombu's Sentinel channel; its
    # connection classes (which re-ask the sentinels on READONLY) are the Sentinel ones.
    connection_class = kombu_redis.SentinelChannel.connection_class  # type: ignore[assignment]
    connection_class_ssl = kombu_redis.SentinelChannel.connection_class_ssl  # type: ignore[assignment]
    master_name: str | None = None
    _saved_sentinels: list[tuple[str, int]] | None = None

    def _sentinel_managed_pool(self, asynchronous: bool = False) -> Any:
        if not self._transport_detached():
            alternates: list[str] = self.connection.client.alt  # type: ignore[union-attr]
            self._saved_sentinels = [
                (url.hostname or "127.0.0.1", url.port or 26379)
                for url in map(urlsplit, alternates)
                if url.scheme == "sentinel"
            ]
            # Private in kombu (unchanged from 5.4 to 5.7), absent from the type stubs.
            return super()._sentinel_managed_pool(asynchronous)  # type: ignore[misc]
        # Detached: late acks only (``_connparams`` refuses the rest), with what it used before.
        params = self._connparams(asynchronous)
        for name in ("host", "port"):
            params.pop(name, None)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            self._saved_sentinels or [],
            sentinel_kwargs=getattr(self, "sentinel_kwargs", None),
            **params,
        )
        self._sentinel_manager = sentinel
        master = {k: params[k] for k in ("username", "password") if k in params}
        pool = sentinel.master_for(self.master_name, **master)  # type: ignore[no-untyped-call]
        return pool.connection_pool


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
