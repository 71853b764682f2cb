"""The batch flow's entries in the takeover index (``worker.stores.takeover``).

* ``chunk:<batch>:<n>`` — a chunk's lease at its expiry while a worker holds it, or a delayed
  retry of the chunk at its due time plus a grace. When it comes due and no live lease holds
  the chunk:

  - a holder's lease ran out unreleased (the holder died): the chunk is **adopted** by a worker
    process that is running a chunk, between two of its rows (``BatchService.adopt``: this
    process if it can, else offered to the others, ``BatchStore.offer_orphan``). Sent as a
    message instead, it would wait behind the bulk queue until some process finished a whole
    chunk, minutes at the quota; adopted, a dead worker's chunk runs elsewhere within a lease,
    a beat and a row.
  - no lease holds it (a retry or hand-on whose message is late or died with its node): the
    chunk is sent again, so it is not lost.
* ``wd:<batch>`` — the batch's next watchdog round: a due time in Redis rather than a delayed
  Celery message that a killed node would keep until the broker's visibility timeout.
"""

from __future__ import annotations

import logging
from typing import Protocol

from worker.batch.control import BatchControl
from worker.batch.store import BatchNotFound
from worker.stores.takeover import DueIndex, Heartbeat

log = logging.getLogger("idv.batch")

CHUNK = "chunk"
WATCHDOG = "wd"


def chunk_member(batch_id: str, chunk_no: int) -> str:
    """The index entry of one chunk."""
    return f"{CHUNK}:{batch_id}:{chunk_no}"


def watchdog_member(batch_id: str) -> str:
    """The index entry of a batch's watchdog."""
    return f"{WATCHDOG}:{batch_id}"


class Adopter(Protocol):
    def adopt(self, batch_id: str, chunk_no: int) -> bool:
        """Run ``chunk_no`` next, between two rows of the chunk this process runs; False when
        this process runs no chunk (or already adopted one)."""


class BatchTakeover:
    """Re-drives the batch entries that came due (registered on a ``Heartbeat``)."""

    def __init__(
        self, control: BatchControl, index: DueIndex, *, adopter: Adopter | None = None
    ) -> None:
        self.control = control
        self.index = index
        self.adopter = adopter

    def register(self, heartbeat: Heartbeat) -> None:
        heartbeat.on(CHUNK, self.chunk)
        heartbeat.on(WATCHDOG, self.watchdog)

    def chunk(self, rest: str) -> None:
        """``<batch>:<n>`` came due: send it again unless a live lease holds it."""
        batch_id, _, number = rest.rpartition(":")
        chunk_no = int(number)
        try:
            verdict = self.control.store.redrive_chunk(batch_id, chunk_no)
        except BatchNotFound:
            verdict = -1
        if verdict < 0:
            self.index.drop(chunk_member(batch_id, chunk_no))
            return
        if verdict == 0:
            return  # its holder renews it (and moves the entry); taken again if it stops
        if verdict == 2:
            self.control.metrics.incr("idv_takeovers", kind="chunk")
            if self.adopter is not None and self.adopter.adopt(batch_id, chunk_no):
                log.info("batch %s: chunk %d taken over (adopted here)", batch_id, chunk_no)
                return
            log.info("batch %s: chunk %d taken over (offered to every worker)", batch_id, chunk_no)
            self.control.store.offer_orphan(batch_id, chunk_no)
        else:
            log.info("batch %s: chunk %d sent again (its message is late or lost)", batch_id,
                     chunk_no)  # fmt: skip
        # A message too: an idle worker takes it at once (the adopter's lease decides).
        self.control.send_chunks(batch_id, [chunk_no])

    def watchdog(self, batch_id: str) -> None:
        """One watchdog round; the next is due ``delay`` later (none once the batch stopped)."""
        delay = self.control.watchdog(batch_id)
        if delay is None:
            self.index.drop(watchdog_member(batch_id))
        else:
            self.index.schedule(watchdog_member(batch_id), self.control.store.clock() + delay)
