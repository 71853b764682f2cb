"""The batch flow's entries in the takeover index (``worker.stores.takeover``).

* ``chunk:<batch>:<n>`` — a chunk's lease at its expiry while a worker holds it, or a delayed
  retry of the chunk at its due time plus a grace. When it comes due and no live lease holds
  the chunk, the chunk is sent again: a dead worker's chunk runs elsewhere within a lease plus
  a beat, and a retry whose delayed message died with its node is not lost.
* ``wd:<batch>`` — the batch's next watchdog round: a due time in Redis rather than a delayed
  Celery message that a killed node would keep until the broker's visibility timeout.
"""

from __future__ import annotations

import logging

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


class BatchTakeover:
    """Re-drives the batch entries that came due (registered on a ``Heartbeat``)."""

    def __init__(self, control: BatchControl, index: DueIndex) -> None:
        self.control = control
        self.index = index

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
        log.info("batch %s: chunk %d taken over", batch_id, chunk_no)
        self.control.metrics.incr("idv_takeovers", kind="chunk")
        self.control.send_chunks(batch_id, [chunk_no])

    def watchdog(self, batch_id: str) -> None:
        """One watchdog round; the next is due ``delay`` later (none once the batch stopped)."""
        delay = self.control.watchdog(batch_id)
        if delay is None:
            self.index.drop(watchdog_member(batch_id))
        else:
            self.index.schedule(watchdog_member(batch_id), self.control.store.clock() + delay)
