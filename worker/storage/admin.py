"""Bucket-level operations of ``S3ObjectStore``: listing and deleting under a prefix, open
multipart uploads (the stale-upload sweep), and the bucket itself (``s3 ensure-bucket``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from worker.keys import validate_object_key
from worker.storage.errors import ObjectNotFound, StorageError, s3_call
from worker.storage.objects import OpenUpload

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


class BucketAdmin:
    """Mixed into ``S3ObjectStore``: maintenance on its ``client`` and ``bucket``."""

    client: S3Client
    bucket: str

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix`` (paged; erasure and maintenance, not hot paths)."""
        validate_object_key(prefix)
        with s3_call("ListObjectsV2", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"]

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix`` (a folder: it must end with ``/``)."""
        if not prefix.endswith("/"):
            raise ValueError("delete_prefix takes a folder prefix ending with '/'")
        keys = list(self.list_keys(prefix))
        for first in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[first : first + 1000]]
            with s3_call("DeleteObjects", prefix):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})  # type: ignore[typeddict-item]
        return len(keys)

    def abort_stale_uploads(
        self, prefix: str, older_than_s: float, *, now: datetime | None = None
    ) -> int:
        """Abort multipart uploads under ``prefix`` started over ``older_than_s`` ago.

        Killed workers leave uploads behind; their parts cost storage until aborted.
        Returns how many were aborted.
        """
        if prefix:
            validate_object_key(prefix)
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than_s)
        return self.abort_uploads(prefix, lambda upload: upload["Initiated"] <= cutoff)

    def abort_uploads(
        self,
        prefix: str,
        accept: Callable[[Mapping[str, Any]], bool],
        *,
        gone: frozenset[str] = frozenset({"NoSuchUpload"}),
    ) -> int:
        """Abort the multipart uploads under ``prefix`` that ``accept`` (given each upload's
        listing: ``Key``, ``UploadId``, ``Initiated``) selects; an upload whose abort answers one
        of ``gone`` (finished or aborted meanwhile) is skipped. Returns how many were aborted."""
        with s3_call("ListMultipartUploads", prefix):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            chosen = [
                (upload["Key"], upload["UploadId"])
                for page in pages
                for upload in page.get("Uploads", [])
                if accept(cast("Mapping[str, Any]", upload))
            ]
        aborted = 0
        for key, upload_id in chosen:
            try:
                with s3_call("AbortMultipartUpload", key):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=key, UploadId=upload_id
                    )
                aborted += 1
            except StorageError as exc:
                if exc.code not in gone:
                    raise
        return aborted

    def abort_upload(self, key: str, upload_id: str) -> bool:
        """Abort one multipart upload; False if the store no longer knows it (ended already).

        Raises ``NotSupported`` on stores without AbortMultipartUpload (s3rver 3.x).
        """
        validate_object_key(key)
        try:
            with s3_call("AbortMultipartUpload", key):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except StorageError as exc:
            if exc.code == "NoSuchUpload":
                return False
            raise
        return True

    def list_uploads(self, key: str) -> list[OpenUpload]:
        """Open multipart uploads of exactly ``key`` (the key is the prefix, as MinIO needs).

        Raises ``NotSupported`` on stores without ListMultipartUploads (s3rver 3.x).
        """
        validate_object_key(key)
        with s3_call("ListMultipartUploads", key):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=key
            )
            return [
                OpenUpload(upload["Key"], upload["UploadId"], upload["Initiated"])
                for page in pages
                for upload in page.get("Uploads", [])
                if upload["Key"] == key
            ]

    def bucket_exists(self) -> bool:
        """Whether the bucket exists (HeadBucket; other errors raise ``StorageError``)."""
        try:
            with s3_call("HeadBucket", None):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound:
            return False
        return True

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist; True if this call created it."""
        if self.bucket_exists():
            return False
        region = self.client.meta.region_name
        try:
            with s3_call("CreateBucket", None):
                if region and region != "us-east-1":
                    self.client.create_bucket(
                        Bucket=self.bucket,
                        CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                    )
                else:
                    self.client.create_bucket(Bucket=self.bucket)
        except StorageError as exc:
            if exc.code not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise
            return False
        return True
