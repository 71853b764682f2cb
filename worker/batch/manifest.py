"""Streaming manifest parsing (CSV or JSONL) and row validation, in constant memory.

A manifest row names one document image and how to read it::

    image            local path (relative to the manifest), s3://bucket/key or http(s) URL
                     (also accepted as: source, image_source, path, image_path, url, image_url, uri)
    doc_type         8-digit DocType (seed 002); optional when a default is configured
    card_side        OCR_ID_FACE | OCR_ID_NATIONAL_EMBLEM (mainland ID card only)
    spoof, face_quality   booleans (true/false, T/F, Y/N, 1/0, yes/no)
    id_threshold     0 | 1 | 2 | 3
    merchant_user_id optional; a digest is used when absent
    item_id          optional; else the row's content names the item

Other columns are ignored. Rows are checked here for everything that needs no I/O (DocType,
flags, ids, the shape of the source); the image itself is read and checked by the worker just
before the billed call, because a remote source may only be readable from the workers and the
submission must stay fast. A bad row becomes a ``ParsedRow`` with ``error`` set (row number and
reason are reported); only a problem with the whole file raises ``ManifestError``.

``row`` is the 1-based position among data rows (the CSV header is not a row); ``line`` is
the physical line of the file where the row starts, for finding it in an editor.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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

Format = Literal["csv", "jsonl"]
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
_READ_BLOCK = 1024 * 1024
_FLAGS = frozenset({"spoof", "face_quality"})


class ManifestError(InvalidInput):
    """The manifest as a whole cannot be used (format, encoding, missing columns)."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


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
    merchant_user_id: str | None = None
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


# ------------------------------------------------------------------------------ files


def detect_format(path: str | Path, explicit: str | None = None) -> Format:
    """``csv`` or ``jsonl``: explicit choice, else the extension, else the first byte."""
    if explicit is not None:
        if explicit not in ("csv", "jsonl"):
            raise ManifestError(f"unknown manifest format {explicit!r} (csv or jsonl)")
        return "csv" if explicit == "csv" else "jsonl"
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with open(path, "rb") as stream:
        head = stream.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head.startswith(b"{") else "csv"


def check_encoding(path: str | Path, on_block: Callable[[bytes], None] | None = None) -> None:
    """Raise ``ManifestError`` (with the line) unless the file is valid UTF-8.

    ``on_block`` sees every block read, so one pass can also hash the file.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as stream:
        while block := stream.read(_READ_BLOCK):
            if on_block is not None:
                on_block(block)
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                line += block[: exc.start].count(b"\n")
                raise ManifestError("not valid UTF-8", line=line) from None
            line += block.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise ManifestError("ends inside a UTF-8 sequence", line=line) from None


def _normalise_header(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _parsed(row: int, line: int, data: Mapping[str, Any], default: str | None) -> ParsedRow:
    try:
        return ParsedRow(row, line, validate_row(data, default))
    except RowError as exc:
        return ParsedRow(row, line, None, exc.reason)


def iter_csv(path: str | Path, default_doc_type: str | None = None) -> Iterator[ParsedRow]:
    """Rows of a CSV manifest (header required), one at a time."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ManifestError(f"unreadable CSV header: {exc}", line=1) from None
        names = [_normalise_header(h) for h in header]
        if not any(n in SOURCE_ALIASES for n in names):
            raise ManifestError(
                f"no image source column; expected one of: {', '.join(SOURCE_ALIASES)}", line=1
            )
        if "doc_type" not in names and default_doc_type is None:
            raise ManifestError("no doc_type column and no default DocType given", line=1)
        width = len(names)
        row = 0
        last_line = reader.line_num
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ManifestError(f"malformed CSV: {exc}", line=last_line + 1) from None
            start, last_line = last_line + 1, reader.line_num
            if not values or (len(values) == 1 and not values[0].strip()):
                continue
            row += 1
            data = dict(zip(names, values[:width], strict=False))
            yield _parsed(row, start, data, default_doc_type)


def iter_jsonl(path: str | Path, default_doc_type: str | None = None) -> Iterator[ParsedRow]:
    """Rows of a JSONL manifest (one JSON object a line; blank lines skipped)."""
    row = 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            text = raw.strip()
            if not text or (line_no == 1 and text == b"\xef\xbb\xbf"):
                continue
            if line_no == 1 and text.startswith(b"\xef\xbb\xbf"):
                text = text[3:]
            row += 1
            try:
                data = json.loads(text)
            except ValueError:
                yield ParsedRow(row, line_no, None, "not valid JSON")
                continue
            if not isinstance(data, dict):
                yield ParsedRow(row, line_no, None, "not a JSON object")
                continue
            yield _parsed(row, line_no, data, default_doc_type)


def iter_manifest(
    path: str | Path, fmt: Format, default_doc_type: str | None = None
) -> Iterator[ParsedRow]:
    """Rows of a manifest in either format."""
    if fmt == "csv":
        return iter_csv(path, default_doc_type)
    return iter_jsonl(path, default_doc_type)
