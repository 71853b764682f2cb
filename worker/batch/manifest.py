"""Streaming manifest parsing (CSV or JSONL), in constant memory.

Each data row is checked by ``worker.batch.rows`` (the fields a row may have are described
there): everything that needs no I/O (DocType, flags, ids, the shape of the source); the image
itself is read and checked by the worker just before the billed call, because a remote source
may only be readable from the workers and the submission must stay fast. A bad row becomes a
``ParsedRow`` with ``error`` set (row number and reason are reported); only a problem with the
whole file raises ``ManifestError``.

``row`` is the 1-based position among data rows (the CSV header is not a row); ``line`` is
the physical line of the file where the row starts, for finding it in an editor.
"""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from worker.batch.rows import (
    MAX_SOURCE_LENGTH,
    SOURCE_ALIASES,
    ImageSource,
    ItemSpec,
    ManifestRow,
    ParsedRow,
    RowError,
    SourceKind,
    parse_source,
    validate_row,
)
from worker.errors import InvalidInput

# The names of a row (worker.batch.rows) stay importable from here, where they began.
__all__ = [
    "MAX_SOURCE_LENGTH",
    "SOURCE_ALIASES",
    "Format",
    "ImageSource",
    "ItemSpec",
    "ManifestError",
    "ManifestRow",
    "ParsedRow",
    "RowError",
    "SourceKind",
    "check_encoding",
    "detect_format",
    "iter_csv",
    "iter_jsonl",
    "iter_manifest",
    "parse_source",
    "validate_row",
]

Format = Literal["csv", "jsonl"]
_READ_BLOCK = 1024 * 1024


class ManifestError(InvalidInput):
    """The manifest as a whole cannot be used (format, encoding, missing columns)."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        super().__init__(f"line {line}: {reason}" if line is not None else reason)


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
