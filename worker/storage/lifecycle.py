"""The bucket's lifecycle rules: personal data is not kept longer than the retention period.

Evidence, onboarding result documents and batch documents expire after ``days``; noncurrent
versions (a versioned bucket keeps what was deleted or overwritten) a day after they became
noncurrent; incomplete multipart uploads (a worker killed mid-upload) are aborted after a day.
"""

from __future__ import annotations

from typing import Any

from worker.keys import normalize_prefix
from worker.settings import BATCHES_FOLDER, EVIDENCE_FOLDER, RESULTS_FOLDER

RETAINED_PREFIXES = (EVIDENCE_FOLDER, RESULTS_FOLDER, BATCHES_FOLDER)
NONCURRENT_DAYS = 1


def lifecycle_configuration(prefix: str, days: int) -> dict[str, Any]:
    """``PutBucketLifecycleConfiguration``'s document for the worker's objects."""
    if days < 1:
        raise ValueError("days must be at least 1")
    base = normalize_prefix(prefix)
    rules: list[dict[str, Any]] = [
        {
            "ID": f"idv-retention-{top.rstrip('/')}",
            "Filter": {"Prefix": base + top},
            "Status": "Enabled",
            "Expiration": {"Days": days},
            # On a versioned bucket, what was deleted or overwritten (an erased person's data
            # among it) goes a day later instead of staying as a noncurrent version.
            "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_DAYS},
        }
        for top in RETAINED_PREFIXES
    ]
    rules.append(
        {
            "ID": "idv-abort-incomplete-uploads",
            "Filter": {"Prefix": base},
            "Status": "Enabled",
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    )
    return {"Rules": rules}
