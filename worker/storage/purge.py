"""Erasing from a bucket that keeps copies: every version, every delete marker, every upload in
progress, and a list of what could not be removed and why.

A plain ``DeleteObject`` on a versioned bucket removes nothing: it adds a delete marker and the
data stays as a noncurrent version. ``purge`` therefore lists the versions under a prefix
(``ListObjectVersions``, paged) and deletes each one by its ``VersionId``, delete markers
included, then aborts the multipart uploads still open under the prefix (their parts hold data
too). On a bucket without versioning the listing shows each object once (version ``null``), so
the same code removes it.

What a purge cannot reach it reports as ``Remaining`` (key, version, reason), never silently:

* a version under Object Lock retention (mode and date) or a legal hold (``HeadObject``, else
  ``GetObjectRetention`` / ``GetObjectLegalHold``): S3 refuses to delete it before the date /
  while the hold is on; erasure does not bypass governance retention (that is a decision for
  whoever set it);
* a key the bucket replicates (``GetBucketReplication``): deleting a version here is not
  replicated, the replica in the destination bucket stays;
* any other refusal (its S3 error code).

``bucket_copies`` reads the bucket's settings that keep copies (versioning, a lifecycle rule for
noncurrent versions, Object Lock, replication) for ``idv-worker doctor``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from worker.keys import validate_object_key
from worker.storage.admin import BucketAdmin
from worker.storage.errors import NotSupported, StorageError, s3_call

# Codes of "this bucket has no such configuration" (AWS, MinIO, moto).
_NO_CONFIGURATION = frozenset({
    "NoSuchLifecycleConfiguration",
    "ObjectLockConfigurationNotFoundError",
    "ReplicationConfigurationNotFoundError",
    "NoSuchObjectLockConfiguration",
    "NoSuchReplicationConfiguration",
})  # fmt: skip
_GONE = frozenset({"NoSuchKey", "NoSuchVersion", "NoSuchUpload", "404", "NotFound"})


@dataclass(frozen=True, slots=True)
class Remaining:
    """A copy erasure could not remove: which, and why."""

    key: str
    version_id: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ReplicationRule:
    """One enabled replication rule: what it copies (``prefix``; None = a tag filter) and where."""

    rule_id: str
    prefix: str | None
    destination: str

    def covers(self, key: str) -> bool:
        return self.prefix is None or key.startswith(self.prefix)


@dataclass(slots=True)
class PurgeOutcome:
    """What one purge removed and what it left."""

    objects: int = 0  # keys of which no version is left
    versions: int = 0  # object versions deleted, current and noncurrent
    delete_markers: int = 0
    uploads: int = 0  # multipart uploads aborted
    remaining: list[Remaining] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class BucketCopies:
    """The bucket's settings that keep copies erasure must know of."""

    versioning: str | None  # "Enabled", "Suspended" or None (never enabled)
    noncurrent_expiry: bool  # an enabled lifecycle rule expires noncurrent versions
    object_lock: str | None  # "enabled" or "enabled, default GOVERNANCE 30 days"; None: off
    replication: tuple[ReplicationRule, ...] = ()

    def warnings(self) -> list[str]:
        """What keeps personal data past an erasure or past the retention period."""
        out = []
        if self.versioning == "Enabled" and not self.noncurrent_expiry:
            out.append(
                "versioning is on without a lifecycle rule expiring noncurrent versions "
                "(deleted and overwritten data stays as noncurrent versions)"
            )
        if self.object_lock is not None:
            out.append(f"Object Lock is {self.object_lock} (locked versions cannot be erased)")
        for rule in self.replication:
            what = "tagged objects" if rule.prefix is None else repr(rule.prefix or "every key")
            out.append(
                f"replication rule {rule.rule_id!r} copies {what} to {rule.destination} "
                "(erasure does not reach the replica)"
            )
        return out


class Purger(BucketAdmin):
    """A base of ``S3ObjectStore``: purges on its ``client`` and ``bucket``."""

    def purge(
        self,
        prefix: str,
        *,
        match: Callable[[str], bool] | None = None,
        noncurrent_only: bool = False,
        replication: tuple[ReplicationRule, ...] = (),
    ) -> PurgeOutcome:
        """Delete every version and delete marker of the keys under ``prefix`` (those ``match``
        accepts) and abort their open uploads. ``noncurrent_only`` keeps each key's current
        version (after rewriting an object without some of its data). ``replication``: the
        bucket's rules (``bucket_copies``); a purged key they cover is reported as remaining.
        """
        validate_object_key(prefix)
        accept = match or (lambda _key: True)
        outcome = PurgeOutcome()
        touched: set[str] = set()
        left: set[str] = set()
        for key, version_id, marker in self._versions(prefix, accept, noncurrent_only):
            refusal = self._delete_version(key, version_id)
            touched.add(key)
            if refusal is None:
                if marker:
                    outcome.delete_markers += 1
                else:
                    outcome.versions += 1
            else:
                outcome.remaining.append(Remaining(key, version_id, refusal))
                left.add(key)
        outcome.uploads = self._abort_uploads(prefix, accept)
        if not noncurrent_only:
            outcome.objects = len(touched - left)
        for key in sorted(touched):
            outcome.remaining.extend(
                Remaining(key, None, f"replicated to {rule.destination} by rule "
                          f"{rule.rule_id!r}: deleting here does not delete the replica")
                for rule in replication
                if rule.covers(key)
            )  # fmt: skip
        return outcome

    def _versions(
        self, prefix: str, accept: Callable[[str], bool], noncurrent_only: bool
    ) -> Iterator[tuple[str, str | None, bool]]:
        """``(key, version id, is a delete marker)`` under ``prefix``, listed before deleting."""
        found: list[tuple[str, str | None, bool]] = []
        try:
            with s3_call("ListObjectVersions", prefix):
                pages = self.client.get_paginator("list_object_versions").paginate(
                    Bucket=self.bucket, Prefix=prefix
                )
                for page in pages:
                    entries: list[tuple[Any, bool]] = [
                        *((v, False) for v in page.get("Versions", [])),
                        *((m, True) for m in page.get("DeleteMarkers", [])),
                    ]
                    for item, marker in entries:
                        if noncurrent_only and item.get("IsLatest"):
                            continue
                        if accept(item["Key"]):
                            found.append((item["Key"], item.get("VersionId"), marker))
        except NotSupported:
            # A store without versions (s3rver): each object once, deleted by key.
            keys = [] if noncurrent_only else list(self.list_keys(prefix))
            found = [(key, None, False) for key in keys if accept(key)]
        return iter(found)

    def _delete_version(self, key: str, version_id: str | None) -> str | None:
        """Delete one version; None when it is gone, else why it stays."""
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        try:
            with s3_call("DeleteObject", key):
                self.client.delete_object(Bucket=self.bucket, Key=key, **extra)
        except StorageError as exc:
            if exc.code in _GONE:
                return None
            return self._lock_reason(key, version_id) or f"DeleteObject refused: {exc.code}"
        return None

    def _lock_reason(self, key: str, version_id: str | None) -> str | None:
        """What locks this version (retention, legal hold), or None if nothing does.

        HeadObject reports both in one call (where the caller may read them); stores that
        leave them out of it are asked with GetObjectRetention and GetObjectLegalHold.
        """
        extra: dict[str, Any] = {"VersionId": version_id} if version_id else {}
        found: dict[str, Any] = {}
        try:
            with s3_call("HeadObject", key):
                found.update(self.client.head_object(Bucket=self.bucket, Key=key, **extra))
        except StorageError:
            pass
        if not found.get("ObjectLockMode"):
            try:
                with s3_call("GetObjectRetention", key):
                    kept = self.client.get_object_retention(Bucket=self.bucket, Key=key, **extra)
                retention = dict(kept.get("Retention") or {})
                found["ObjectLockMode"] = retention.get("Mode")
                found["ObjectLockRetainUntilDate"] = retention.get("RetainUntilDate")
            except StorageError:
                pass  # no retention on this version, or the store cannot say
        if not found.get("ObjectLockLegalHoldStatus"):
            try:
                with s3_call("GetObjectLegalHold", key):
                    hold = self.client.get_object_legal_hold(Bucket=self.bucket, Key=key, **extra)
                found["ObjectLockLegalHoldStatus"] = (hold.get("LegalHold") or {}).get("Status")
            except StorageError:
                pass
        reasons = []
        if found.get("ObjectLockMode"):
            until = found.get("ObjectLockRetainUntilDate")
            when = until.isoformat() if isinstance(until, datetime) else str(until or "?")
            reasons.append(f"Object Lock retention {found['ObjectLockMode']} until {when}")
        if found.get("ObjectLockLegalHoldStatus") == "ON":
            reasons.append("Object Lock legal hold ON")
        return "; ".join(reasons) or None

    def _abort_uploads(self, prefix: str, accept: Callable[[str], bool]) -> int:
        try:
            return self.abort_uploads(prefix, lambda upload: accept(upload["Key"]), gone=_GONE)
        except NotSupported:
            return 0

    def bucket_copies(self) -> BucketCopies:
        """Versioning, noncurrent-version expiry, Object Lock and replication of the bucket."""
        with s3_call("GetBucketVersioning", None):
            versioning = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status")
        rules = self._configuration(
            "GetBucketLifecycleConfiguration",
            lambda: self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket),
        ).get("Rules", [])
        noncurrent = any(
            r.get("Status") == "Enabled" and r.get("NoncurrentVersionExpiration") for r in rules
        )
        lock = self._configuration(
            "GetObjectLockConfiguration",
            lambda: self.client.get_object_lock_configuration(Bucket=self.bucket),
        ).get("ObjectLockConfiguration", {})
        replication = self._configuration(
            "GetBucketReplication",
            lambda: self.client.get_bucket_replication(Bucket=self.bucket),
        ).get("ReplicationConfiguration", {})
        return BucketCopies(
            versioning=versioning,
            noncurrent_expiry=noncurrent,
            object_lock=_describe_lock(lock),
            replication=tuple(_replication_rules(replication)),
        )

    @staticmethod
    def _configuration(operation: str, call: Callable[[], Any]) -> dict[str, Any]:
        """A bucket configuration, ``{}`` when the bucket has none or the store lacks it."""
        try:
            with s3_call(operation, None):
                return dict(call())
        except NotSupported:
            return {}
        except StorageError as exc:
            if exc.code in _NO_CONFIGURATION:
                return {}
            raise


def _describe_lock(config: dict[str, Any]) -> str | None:
    if config.get("ObjectLockEnabled") != "Enabled":
        return None
    default = (config.get("Rule") or {}).get("DefaultRetention") or {}
    if not default.get("Mode"):
        return "enabled"
    span = f"{default['Days']} days" if default.get("Days") else f"{default.get('Years')} years"
    return f"enabled, default {default['Mode']} {span}"


def _replication_rules(config: dict[str, Any]) -> Iterator[ReplicationRule]:
    for rule in config.get("Rules", []):
        if rule.get("Status") != "Enabled":
            continue
        filt = rule.get("Filter") or {}
        if "Prefix" in rule:
            prefix: str | None = rule["Prefix"]
        elif "Prefix" in filt:
            prefix = filt["Prefix"]
        elif "And" in filt:
            prefix = filt["And"].get("Prefix")
        elif "Tag" in filt:
            prefix = None
        else:
            prefix = ""
        destination = str((rule.get("Destination") or {}).get("Bucket", "?"))
        yield ReplicationRule(str(rule.get("ID", "")), prefix, destination)
