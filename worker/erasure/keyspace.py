"""The Redis side of erasure: keys by pattern, dead letters, results-stream entries, the
subject's webhook events, and the audit entry each run appends."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

import redis

from worker.erasure.report import ErasureReport
from worker.jobs import KIND_WEBHOOK
from worker.jobs.outbox import SCOPES, Outbox
from worker.stores import DeadLetterStore, ResultStore

AUDIT_MAXLEN = 100_000
_STREAM_PAGE = 1000


class KeyspaceEraser:
    """Removes a subject's Redis data (keys, entries and events) and audits each run."""

    def __init__(
        self,
        client: redis.Redis,
        namespace: str,
        *,
        results: ResultStore,
        deadletters: DeadLetterStore,
        outbox: Outbox | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.ns = namespace
        self.results = results
        self.deadletters = deadletters
        self.outbox = outbox
        self._clock = clock

    @property
    def audit_stream(self) -> str:
        """``<ns>audit``: one entry per erasure, without personal data."""
        return f"{self.ns}audit"

    def events(self, scope: str, subject: str) -> ErasureReport:
        """The subject's webhook events: in the outbox, and dead-lettered (under
        ``<scope>:<subject>:<event id>``, or, written by earlier versions, under the event id
        with the event in the payload)."""
        report = ErasureReport("events", subject)
        if self.outbox is not None:
            report.outbox_events += self.outbox.erase(scope, subject)
        prefix = f"{scope}:{subject}:"

        def mine(ref: str) -> bool:
            if ref.startswith(prefix):
                return True
            if not ref.startswith("evt_"):
                return False
            entry = self.deadletters.get(KIND_WEBHOOK, ref)
            notice = entry.payload.get("notice") if entry is not None else None
            return (
                isinstance(notice, dict)
                and notice.get("subject") == subject
                and SCOPES.get(str(notice.get("type", "")).partition(".")[0]) == scope
            )

        report.dead_letters += self.remove_dead_letters(KIND_WEBHOOK, mine)
        return report

    def delete_matching(self, pattern: str) -> int:
        """Delete every key matching ``pattern`` (SCAN); how many went."""
        keys = list(self.redis.scan_iter(match=pattern, count=500))
        return int(cast("int", self.redis.delete(*keys))) if keys else 0

    def remove_dead_letters(self, kind: str, match: Callable[[str], bool]) -> int:
        """Remove the dead letters of ``kind`` whose ref ``match`` accepts; how many went."""
        index = f"{self.ns}dlq:kind:{kind}"
        refs = [m.decode() for m in cast("list[bytes]", self.redis.zrange(index, 0, -1))]
        return sum(1 for ref in refs if match(ref) and self.deadletters.remove(kind, ref))

    def xdel_where(self, match: Callable[[dict[str, str]], bool]) -> int:
        """Delete every results-stream entry whose fields ``match`` (scans the stream)."""
        stream = self.results.stream
        start = "-"
        removed = 0
        while True:
            page = cast(
                "list[tuple[bytes, dict[bytes, bytes]]]",
                self.redis.xrange(stream, min=start, max="+", count=_STREAM_PAGE),
            )
            if not page:
                return removed
            doomed = [
                entry_id
                for entry_id, fields in page
                if match({k.decode(): v.decode("utf-8", "replace") for k, v in fields.items()})
            ]
            if doomed:
                removed += int(cast("int", self.redis.xdel(stream, *doomed)))
            last = page[-1][0].decode()
            start = f"({last}"
            if len(page) < _STREAM_PAGE:
                return removed

    def audit(self, report: ErasureReport, by: str) -> None:
        """Append the run's counts to the audit stream (no keys, no ids: no personal data)."""
        counts = {k: str(v) for k, v in report.as_dict().items() if k != "remaining"}
        fields: dict[Any, Any] = {
            "at": f"{self._clock():.3f}",
            "by": (by or "unknown")[:64],
            **counts,
            # How many copies remain, not which: their keys hold transaction ids.
            "remaining": str(len(report.remaining)),
        }
        self.redis.xadd(self.audit_stream, fields, maxlen=AUDIT_MAXLEN, approximate=True)
