"""Deterministic ids: a batch from its manifest, an item from its row, a call from both.

* **Batch id** - SHA-256 over the manifest's bytes (streamed, constant memory) and the options
  that change what the rows mean (default DocType, product code). Submitting the same manifest
  again therefore names the same batch and resumes it instead of starting a second one.
* **Item id** - the row's ``item_id`` when it has one, else a digest of the row's normalised
  content (image source *as written*, DocType and options). Two identical rows are one item and
  are billed once; moving the manifest to another folder does not change the ids.
* **MerchantBizId** - 32 hex characters derived from (batch, item): stable across retries, so a
  provider-side record can always be traced back to its item.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from worker.keys import validate_id

BATCH_PREFIX = "b"
ITEM_PREFIX = "r"
_BATCH_HEX = 20  # 80 bits: no two manifests of one deployment collide in practice
_ITEM_HEX = 24  # 96 bits: collision odds for 10^6 rows are ~10^-17
_READ_BLOCK = 1024 * 1024


class ManifestHasher:
    """Streaming hash of a manifest and its submission options (``update`` then ``batch_id``)."""

    def __init__(self, options: Mapping[str, str | None] | None = None) -> None:
        self._hash = hashlib.sha256(b"idv-batch-v1\0")
        self._options = dict(options or {})
        self.size = 0

    def update(self, data: bytes) -> None:
        """Feed the next bytes of the manifest."""
        self._hash.update(data)
        self.size += len(data)

    def batch_id(self) -> str:
        """The id of the batch (``b`` + 20 hex digits)."""
        final = self._hash.copy()
        final.update(b"\0options\0")
        final.update(json.dumps(self._options, sort_keys=True, separators=(",", ":")).encode())
        return BATCH_PREFIX + final.hexdigest()[:_BATCH_HEX]


def batch_id_of_stream(
    stream: BinaryIO, options: Mapping[str, str | None] | None = None
) -> tuple[str, int]:
    """``(batch_id, size)`` of a binary stream read to its end in 1 MiB blocks."""
    hasher = ManifestHasher(options)
    while block := stream.read(_READ_BLOCK):
        hasher.update(block)
    return hasher.batch_id(), hasher.size


def batch_id_of_file(path: str | Path, options: Mapping[str, str | None] | None = None) -> str:
    """The batch id of a manifest file."""
    with open(path, "rb") as stream:
        return batch_id_of_stream(stream, options)[0]


def content_item_id(fields: Iterable[str | int | bool | None]) -> str:
    """Item id from a row's normalised fields (``r`` + 24 hex digits)."""
    text = json.dumps(list(fields), ensure_ascii=False, separators=(",", ":"))
    return ITEM_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()[:_ITEM_HEX]


def check_item_id(value: str) -> str:
    """A caller-chosen item id, validated for use in keys (``InvalidKeyError`` otherwise)."""
    return validate_id(value, "item_id")


def merchant_biz_id(batch_id: str, item_id: str) -> str:
    """The ``MerchantBizId`` of one item's call: 32 lower-case hex characters."""
    return hashlib.sha256(f"{batch_id}/{item_id}".encode()).hexdigest()[:32]


def default_merchant_user_id(batch_id: str, item_id: str) -> str:
    """``MerchantUserId`` when the row has none: a digest (the provider advises hashed ids)."""
    return hashlib.sha256(f"user/{batch_id}/{item_id}".encode()).hexdigest()[:32]
