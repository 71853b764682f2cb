"""The boto3 S3 client of the storage adapter, and the user metadata it writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from worker.settings import StorageSettings
from worker.storage.objects import SHA256_METADATA

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client


def make_s3_client(
    settings: StorageSettings,
    *,
    max_pool_connections: int | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 60.0,
    max_attempts: int = 5,
    session: boto3.session.Session | None = None,
) -> S3Client:
    """One S3 client for this process, from ``settings`` (thread-safe; share it).

    ``session`` lets callers that build many clients (tests) reuse loaded service models.
    The connection pool defaults to room for a few uploads' parts in flight at once.
    """
    if max_pool_connections is None:
        max_pool_connections = max(16, 2 * settings.s3_upload_concurrency)
    config = Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        retries={"mode": "standard", "total_max_attempts": max_attempts},  # first try included
        max_pool_connections=max_pool_connections,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        tcp_keepalive=True,
        # S3-compatible stores (MinIO, moto) reject or mis-handle the default CRC checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Custom endpoints rarely have wildcard DNS for virtual-hosted buckets.
        s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
    )
    secret = settings.s3_secret_access_key
    # A private session: never the module-level default session boto3 would otherwise create.
    session = session or boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
    )


def user_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """Caller metadata, checked (ASCII names and values) and lower-cased; ``sha256`` reserved."""
    out: dict[str, str] = {}
    for name, value in (metadata or {}).items():
        low = name.lower()
        if low == SHA256_METADATA:
            raise ValueError("metadata key 'sha256' is reserved: it is computed while uploading")
        if not low or not all(c.isascii() and (c.isalnum() or c in "-_") for c in low):
            raise ValueError(f"metadata key {name!r} must be ASCII letters, digits, '-' or '_'")
        if not value.isascii() or not value.isprintable():
            raise ValueError(f"metadata value for {name!r} must be printable ASCII")
        out[low] = value
    return out
