"""The Redis key layout of a batch.

Keys of one batch (``ns`` = ``settings.namespace``; all share the hash tag ``{batch:<id>}``)::

    <ns>{batch:<id>}:meta      hash: state, manifest, chunk size, totals, timestamps, results key
    <ns>{batch:<id>}:chunks    hash: chunk number -> compressed rows (``model.encode_chunk``)
    <ns>{batch:<id>}:st        string: one status byte per row (NUL pending, d f i u x)
    <ns>{batch:<id>}:n         hash: counters per status, per sub code, call rate
    <ns>{batch:<id>}:detail    hash: row position -> reason of an invalid/failed/uncertain row
    <ns>{batch:<id>}:owner     hash: item id -> "seq:row" of the row that processes it
    <ns>{batch:<id>}:inflight  hash: item id -> "token|time|seq": a call may be under way
    <ns>{batch:<id>}:cdone     bitmap: chunk complete
    <ns>{batch:<id>}:cq        bitmap: chunk has a message waiting in the broker
    <ns>{batch:<id>}:cl        hash: chunk number -> "token|expiry": the worker on it
    <ns>{batch:<id>}:wd / :wdrun / :sub / :fin   short-lived markers (watchdog armed, watchdog
                               just ran, submitter at work, export at work)
    <ns>batches                sorted set: batch ids by creation time
"""

from __future__ import annotations

from dataclasses import dataclass

_KEY_NAMES = (
    "meta",
    "chunks",
    "st",
    "n",
    "detail",
    "owner",
    "inflight",
    "cdone",
    "cq",
    "cl",
)


@dataclass(frozen=True, slots=True)
class BatchKeys:
    """The Redis keys of one batch (see the module docstring)."""

    prefix: str
    meta: str
    chunks: str
    st: str
    n: str
    detail: str
    owner: str
    inflight: str
    cdone: str
    cq: str
    cl: str

    @classmethod
    def under(cls, prefix: str) -> BatchKeys:
        """Keys below ``prefix`` (``<ns>{batch:<id>}:``)."""
        return cls(prefix, *(f"{prefix}{name}" for name in _KEY_NAMES))

    def marker(self, name: str) -> str:
        """A short-lived marker key (``wd``, ``wdrun``, ``sub``, ``fin``)."""
        return f"{self.prefix}{name}"

    def all(self) -> list[str]:
        """Every long-lived key (the ones the TTL refresh covers)."""
        return [f"{self.prefix}{name}" for name in _KEY_NAMES]
