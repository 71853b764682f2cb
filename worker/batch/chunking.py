"""How a chunk task ends: its outcome, or a request to run it again later."""

from __future__ import annotations

from enum import StrEnum

from worker.errors import IdvError, error_code, is_retryable, retry_after


class ChunkOutcome(StrEnum):
    """How a chunk task ended."""

    COMPLETED = "completed"  # every row has a final status
    ALREADY_DONE = "already_done"  # a duplicate message for a complete chunk
    BUSY = "busy"  # another live worker holds the chunk
    STOPPED = "stopped"  # the batch is paused or cancelled; resume re-enqueues the chunk
    YIELDED = "yielded"  # time budget used up; the rest was re-enqueued
    LOST = "lost"  # our lease expired and another worker took the chunk over


class RetryChunk(IdvError):
    """The chunk should be retried later (its lease is released and it is marked queued).

    Retryable, code and delay are the cause's.
    """

    def __init__(self, cause: Exception) -> None:
        self.cause = cause
        self.retryable = is_retryable(cause)
        self.retry_after = retry_after(cause)
        self.code = error_code(cause)
        super().__init__(f"retry chunk: {cause}")
