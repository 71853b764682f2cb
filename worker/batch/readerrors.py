"""The two ways reading a manifest source can fail (re-exported by ``worker.batch.sources``)."""

from __future__ import annotations

from worker.errors import IdvError, InvalidInput


class ImageRejected(InvalidInput):
    """The image cannot be sent: ``code`` (short, stable) and ``reason`` (for people)."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class SourceUnavailable(IdvError):
    """Reading the image failed in a way that may pass; try the item again later."""

    retryable = True

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")
