"""What one erasure removed, counted, and the S3 copies it could not remove."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from worker.storage import PurgeOutcome


@dataclass(slots=True)
class ErasureReport:
    """What one erasure removed (counts) and the S3 copies it could not (``remaining``).

    ``subject`` is a keyed pseudonym or a batch id; ``s3_objects`` counts keys of which no
    version is left, ``s3_versions`` and ``s3_delete_markers`` what was deleted to get there,
    ``s3_uploads`` the multipart uploads aborted.
    """

    what: str
    subject: str
    s3_objects: int = 0
    s3_versions: int = 0
    s3_delete_markers: int = 0
    s3_uploads: int = 0
    redis_keys: int = 0
    stream_events: int = 0
    dead_letters: int = 0
    leases: int = 0
    batch_rows: int = 0
    ledger_entries: int = 0
    outbox_events: int = 0
    remaining: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: ErasureReport) -> None:
        """Add another report's counts (and what it left) to this one."""
        for f in fields(self):
            if f.type == "int":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.remaining.extend(other.remaining)

    def add_purge(self, outcome: PurgeOutcome) -> None:
        """Count what one ``S3ObjectStore.purge`` removed and keep what it could not."""
        self.s3_objects += outcome.objects
        self.s3_versions += outcome.versions
        self.s3_delete_markers += outcome.delete_markers
        self.s3_uploads += outcome.uploads
        self.remaining.extend(r.as_dict() for r in outcome.remaining)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
