"""Evidence archival: liveness videos and face / document images, streamed from the provider
into S3; and the sweep of multipart uploads left behind.
"""

from __future__ import annotations

from worker.evidence.archiver import (
    EvidenceArchiver,
    VideoArchive,
    decode_image,
    sniff_image_type,
)
from worker.evidence.download import (
    BadEvidence,
    DownloadPolicy,
    EvidenceError,
    EvidenceLost,
    EvidenceUnavailable,
    FreshLink,
    Progress,
    ResumableDownload,
    prefetch,
)
from worker.evidence.uploads import SweepReport, UploadIndex, UploadSweeper

__all__ = [
    "BadEvidence",
    "DownloadPolicy",
    "EvidenceArchiver",
    "EvidenceError",
    "EvidenceLost",
    "EvidenceUnavailable",
    "FreshLink",
    "Progress",
    "ResumableDownload",
    "SweepReport",
    "UploadIndex",
    "UploadSweeper",
    "VideoArchive",
    "decode_image",
    "prefetch",
    "sniff_image_type",
]
