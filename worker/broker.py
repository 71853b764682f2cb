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

Use: ``broker_transport = "worker.broker:Transport"`` for ``redis://`` / ``rediss://`` URLs.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis import exceptions as redis_exceptions


class Channel(kombu_redis.Channel):
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
