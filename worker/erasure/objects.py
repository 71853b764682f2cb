"""The S3 side of erasure: every version, delete marker and upload under a prefix goes.

The bucket's replication rules are read once per ``ObjectPurger`` (a copy replicated elsewhere
is reported as remaining, never dropped silently: ``worker.storage.purge``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from worker.erasure.report import ErasureReport
from worker.keys import ObjectKeys
from worker.storage import PurgeOutcome, ReplicationRule, S3ObjectStore, StorageError


class ObjectPurger:
    """Purges S3 objects of the subjects being erased."""

    def __init__(self, objects: S3ObjectStore, keys: ObjectKeys) -> None:
        self.objects = objects
        self.keys = keys
        self._replication: tuple[ReplicationRule, ...] | None = None

    def purge(
        self,
        prefix: str,
        match: Callable[[str], bool] | None = None,
        *,
        noncurrent_only: bool = False,
    ) -> PurgeOutcome:
        """Every version of the keys under ``prefix`` (those ``match`` accepts), or only the
        noncurrent ones."""
        if self._replication is None:
            try:
                self._replication = self.objects.bucket_copies().replication
            except StorageError:
                self._replication = ()  # settings not readable: the purge itself still runs
        return self.objects.purge(
            prefix, match=match, noncurrent_only=noncurrent_only, replication=self._replication
        )

    def transaction(
        self, tid: str, record: Mapping[str, Any] | None, report: ErasureReport
    ) -> None:
        """The result document and evidence of ``tid``: the folders and keys its ``record``
        names, or (no record) whatever under ``evidence/`` and ``results/`` carries its id."""

        def mine(key: str) -> bool:
            return f"/{tid}/" in key or key.endswith(f"/{tid}.json")

        if record is None:
            # No record (expired, or never finished): search both prefixes for the id.
            for top in ("evidence/", "results/"):
                report.add_purge(self.purge(self.keys.prefix + top, mine))
            return
        keys: set[str] = set()
        for pointer in [record.get("result"), *(record.get("evidence") or {}).values()]:
            if isinstance(pointer, dict) and pointer.get("key"):
                keys.add(str(pointer["key"]))
        folders = {key[: key.index(f"/{tid}/") + len(tid) + 2] for key in keys if f"/{tid}/" in key}
        for folder in sorted(folders):
            report.add_purge(self.purge(folder))
        for key in sorted(k for k in keys if not any(k.startswith(f) for f in folders)):
            report.add_purge(self.purge(key, key.__eq__))
