"""One manifest row: its fields, the shape of its image source, and its checks (no I/O).

A manifest row names one document image and how to read it::

    image            local path (relative to the manifest), s3://bucket/key or http(s) URL
                     (also accepted as: source, image_source, path, image_path, url, image_url, uri)
    doc_type         8-digit DocType (seed 002); optional when a default is configured
    card_side        OCR_ID_FACE | OCR_ID_NATIONAL_EMBLEM (mainland ID card only)
    spoof, face_quality   booleans (true/false, T/F, Y/N, 1/0, yes/no)
    id_threshold     0 | 1 | 2 | 3
    merchant_user_id optional; a digest is used when absent
    item_id          optional; else the row's content names the item

Other columns are ignored. A bad row raises ``RowError`` with a reason that is safe to show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from worker.batch.ids import check_item_id, content_item_id
from worker.cloudauth.doctypes import MAINLAND_ID, known_doc_type_codes, lookup_doc_type
from worker.cloudauth.params import CARD_SIDES, ID_THRESHOLDS, MAX_MERCHANT_USER_ID, MAX_URL
from worker.errors import InvalidInput
from worker.keys import InvalidKeyError
from worker.observability.personal import PERSONAL

SourceKind = Literal["file", "s3", "http"]

SOURCE_ALIASES = (
    "image",
    "source",
    "image_source",
    "path",
    "image_path",
    "url",
    "image_url",
    "uri",
)
MAX_SOURCE_LENGTH = 4096
_S3_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_FLAGS = frozenset({"spoof", "face_quality"})


class RowError(InvalidInput):
    """One row is invalid; ``reason`` is safe to show (no image source is echoed)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# ------------------------------------------------------------------------------ sources


@dataclass(frozen=True, slots=True)
class ImageSource:
    """Where an image lives: ``file`` (path), ``s3`` (bucket, key) or ``http`` (url)."""

    kind: SourceKind
    path: str = ""
    bucket: str = ""
    key: str = ""
    url: str = ""


def parse_source(raw: str, base_dir: str | None = None) -> ImageSource:
    """Classify an image source; relative paths are resolved against ``base_dir``."""
    if not raw:
        raise RowError("image source is empty")
    if len(raw) > MAX_SOURCE_LENGTH or any(c in raw for c in "\r\n\0"):
        raise RowError("image source is too long or contains control characters")
    match = _SCHEME_RE.match(raw)
    if match is None:
        path = raw
    else:
        scheme = match.group(1).lower()
        if scheme in ("http", "https"):
            if len(raw) > MAX_URL:
                raise RowError(f"image URL is longer than {MAX_URL} characters")
            try:
                host = urlsplit(raw).hostname
            except ValueError:
                host = None
            if not host:
                raise RowError("image URL has no host")
            return ImageSource("http", url=raw)
        if scheme == "s3":
            bucket, _, key = raw[5:].partition("/")
            if not _S3_BUCKET_RE.fullmatch(bucket) or not key:
                raise RowError("s3 source must be s3://bucket/key with a valid bucket name")
            return ImageSource("s3", bucket=bucket, key=key)
        if scheme == "file":
            parts = urlsplit(raw)
            if parts.netloc not in ("", "localhost"):
                raise RowError("file:// source must name a local path")
            path = unquote(parts.path)
        else:
            raise RowError(f"unsupported image source scheme {scheme!r} (file, s3, http, https)")
    if not path:
        raise RowError("image path is empty")
    if base_dir is not None and not path.startswith("/"):
        path = f"{base_dir.rstrip('/')}/{path}"
    return ImageSource("file", path=path)


# ------------------------------------------------------------------------------ rows


def _blank_to_none(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


class ManifestRow(BaseModel):
    """One manifest row as given (boundary model); see the module docstring for the fields."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    image: str | None = Field(None, validation_alias=AliasChoices(*SOURCE_ALIASES))
    doc_type: str | None = None
    card_side: str | None = None
    spoof: bool = False
    face_quality: bool = False
    id_threshold: str | None = None
    merchant_user_id: str | None = Field(None, json_schema_extra=PERSONAL)
    item_id: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank(cls, value: Any, info: ValidationInfo) -> Any:
        value = _blank_to_none(value)
        if value is None and info.field_name in _FLAGS:
            return False
        if isinstance(value, int | float) and not isinstance(value, bool):
            # JSON numbers for codes and thresholds: keep them comparable as text.
            return str(value) if value == int(value) else value
        return value

    @field_validator("card_side")
    @classmethod
    def _card_side(cls, value: str | None) -> str | None:
        if value is None:
            return None
        upper = value.upper()
        if upper not in CARD_SIDES:
            raise ValueError(f"must be one of {', '.join(sorted(CARD_SIDES))}")
        return upper

    @field_validator("id_threshold")
    @classmethod
    def _threshold(cls, value: str | None) -> str | None:
        if value is not None and value not in ID_THRESHOLDS:
            raise ValueError("must be 0, 1, 2 or 3")
        return value

    @field_validator("merchant_user_id")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > MAX_MERCHANT_USER_ID or not value.isprintable()):
            raise ValueError(f"must be at most {MAX_MERCHANT_USER_ID} printable characters")
        return value

    @field_validator("item_id")
    @classmethod
    def _item(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_item_id(value)
            except InvalidKeyError as exc:
                raise ValueError(exc.reason) from None
        return value


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """A valid row, normalised: everything a worker needs to make the call."""

    source: str  # as written in the manifest (resolved against the batch's base dir later)
    doc_type: str
    card_side: str | None = None
    spoof: bool = False
    face_quality: bool = False
    id_threshold: str | None = None
    merchant_user_id: str | None = None
    explicit_id: str | None = None

    @property
    def item_id(self) -> str:
        """The row's ``item_id``, else a digest of its content."""
        if self.explicit_id is not None:
            return self.explicit_id
        return content_item_id(
            (
                self.source,
                self.doc_type,
                self.card_side,
                self.spoof,
                self.face_quality,
                self.id_threshold,
                self.merchant_user_id,
            )
        )


@dataclass(frozen=True, slots=True)
class ParsedRow:
    """One data row: ``spec`` when valid, else ``error`` (the reason)."""

    row: int
    line: int
    spec: ItemSpec | None
    error: str | None = None


def _pydantic_reason(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"]) or "row"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def validate_row(data: Mapping[str, Any], default_doc_type: str | None = None) -> ItemSpec:
    """Check one row (no I/O) and return its normalised spec; ``RowError`` if invalid."""
    try:
        row = ManifestRow.model_validate(data)
    except ValidationError as exc:
        raise RowError(_pydantic_reason(exc)) from None
    if row.image is None:
        raise RowError("image: no image source given")
    parse_source(row.image)
    doc_type = row.doc_type or default_doc_type
    if doc_type is None:
        raise RowError("doc_type: required (no default DocType is configured)")
    doc = lookup_doc_type(doc_type)
    if doc is None:
        known = ", ".join(known_doc_type_codes())
        raise RowError(f"doc_type: unknown DocType {doc_type[:16]!r}; expected one of {known}")
    if row.card_side is not None and doc.code != MAINLAND_ID:
        raise RowError(f"card_side: applies only to the mainland identity card ({MAINLAND_ID})")
    return ItemSpec(
        source=row.image,
        doc_type=doc_type,
        card_side=row.card_side,
        spoof=row.spoof,
        face_quality=row.face_quality,
        id_threshold=row.id_threshold,
        merchant_user_id=row.merchant_user_id,
        explicit_id=row.item_id,
    )
