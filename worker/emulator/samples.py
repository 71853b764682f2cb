"""Synthetic ID document images for DocOcrV2, with a manifest of what the emulator will answer.

Good samples carry their fields (and the sub code they must produce) embedded, so the emulator
reads them back exactly. Bad samples exercise the provider's image checks.

The manifest says what the emulator answers with the row's own flags: a spoofed sample (212)
has ``spoof`` true, since without ``Spoof=T`` no anti-spoofing runs and it reads as 200. Every
sample has a ``quality`` (0..100) that only the ``IdThreshold`` modes look at; a few good
samples are borderline (70: fails strict mode; 50: fails strict and standard modes).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from worker.emulator.doctypes import (
    DOC_TYPES,
    EMBLEM_SIDE,
    FACE_SIDE,
    MAINLAND_ID,
    canonical_doc_type,
    derive_fields,
)
from worker.emulator.imagecheck import embed_payload
from worker.emulator.products import DOC_OCR_SPOOF_TYPES
from worker.emulator.render import render_card

MANIFEST_COLUMNS = (
    "image",
    "doc_type",
    "card_side",
    "expect",
    "sub_code",
    "passed",
    "fields",
    "spoof",
    "quality",
)
BAD_KINDS = ("too_small", "too_large", "not_image", "gif", "truncated")
_BAD_EXPECT = {
    "too_small": "UnqualifiedPhoto",
    "too_large": "ToolargeImage",
    "not_image": "UnqualifiedPhoto",
    "gif": "UnqualifiedPhoto",
    "truncated": "UnqualifiedPhoto",
}
# One in this many good samples is a 211, 212 or 213 (quality, spoof, wrong type).
_SUB_CODE_PERIOD = 37
_SUB_CODES = {5: "211", 17: "212", 29: "213"}
# Picture quality by position in the same period: unreadable 211s, two borderline kinds.
_QUALITY = {5: 10.0, 11: 70.0, 23: 50.0}
GOOD_QUALITY = 95.0


@dataclass
class SampleRow:
    """One manifest row: ``expect`` is "ok", a failing sub code, or the expected error code."""

    image: str
    doc_type: str
    card_side: str | None
    expect: str
    sub_code: str | None
    passed: str | None
    fields: dict[str, str] = field(default_factory=dict)
    spoof: bool = False
    quality: float | None = None
    spoof_type: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "doc_type": self.doc_type,
            "card_side": self.card_side,
            "expect": self.expect,
            "sub_code": self.sub_code,
            "passed": self.passed,
            "fields": self.fields,
            "spoof": self.spoof,
            "quality": self.quality,
        }


def _doc_types(doc_type: str | None) -> Sequence[str]:
    if doc_type is None:
        return tuple(DOC_TYPES)
    code = canonical_doc_type(doc_type)
    if code is None:
        raise ValueError(f"unknown doc type {doc_type!r}; known: {', '.join(DOC_TYPES)}")
    return (code,)


def _bad_image(kind: str, rng: random.Random, good: bytes, cache: dict[str, bytes]) -> bytes:
    if kind == "too_small":
        out = io.BytesIO()
        Image.new("RGB", (150, 100), (200, 200, 200)).save(out, "JPEG")
        return out.getvalue()
    if kind == "too_large":
        if "too_large" not in cache:
            # Incompressible noise, stored without compression: a valid PNG over 1 MB.
            noise = Image.frombytes("RGB", (640, 600), rng.randbytes(640 * 600 * 3))
            out = io.BytesIO()
            noise.save(out, "PNG", compress_level=0)
            cache["too_large"] = out.getvalue()
        return cache["too_large"]
    if kind == "not_image":
        return b"this is not a picture, only text named like one\n" * 8
    if kind == "gif":
        out = io.BytesIO()
        Image.new("P", (320, 240), 1).save(out, "GIF")
        return out.getvalue()
    return good[: len(good) // 2]


def generate_samples(
    out_dir: str | Path,
    count: int,
    *,
    doc_type: str | None = None,
    bad: int = 0,
    seed: int = 0,
) -> list[SampleRow]:
    """Write ``count`` good and ``bad`` bad images plus ``manifest.jsonl``/``manifest.csv``."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    codes = _doc_types(doc_type)
    rng = random.Random(seed)
    rows: list[SampleRow] = []
    last_good = b""
    for i in range(count):
        row, last_good = _good_sample(out, i, codes, seed)
        rows.append(row)
    if bad and not last_good:
        fields = derive_fields(codes[0], FACE_SIDE, b"bad")
        last_good = render_card(codes[0], FACE_SIDE, fields, "jpeg")
    rows += _bad_samples(out, bad, codes, rng, last_good)
    write_manifest(out, rows)
    return rows


def _good_sample(out: Path, i: int, codes: Sequence[str], seed: int) -> tuple[SampleRow, bytes]:
    """Sample ``i``: a rendered card carrying the answer the emulator gives it; row and image."""
    code = codes[i % len(codes)]
    side = EMBLEM_SIDE if code == MAINLAND_ID and (i // len(codes)) % 2 else FACE_SIDE
    fields = derive_fields(code, side, f"{seed}:{i}".encode())
    sub_code = _SUB_CODES.get(i % _SUB_CODE_PERIOD, "200")
    quality = _QUALITY.get(i % _SUB_CODE_PERIOD, GOOD_QUALITY)
    spoof_type = [DOC_OCR_SPOOF_TYPES[i % len(DOC_OCR_SPOOF_TYPES)]] if sub_code == "212" else []
    fmt = "png" if i % 3 == 2 else "jpeg"
    embedded = embed_payload(
        code, side, fields, sub_code, spoof_type=spoof_type or None, quality=quality
    )
    data = render_card(code, side, fields, fmt, embedded)
    name = f"{i:06d}.{'png' if fmt == 'png' else 'jpg'}"
    (out / name).write_bytes(data)
    row = SampleRow(
        image=str(out / name),
        doc_type=code,
        card_side=side if code == MAINLAND_ID else None,
        expect="ok" if sub_code == "200" else sub_code,
        sub_code=sub_code,
        passed="Y" if sub_code == "200" else "N",
        fields=fields if sub_code in ("200", "212") else {},
        spoof=sub_code == "212",
        quality=quality,
        spoof_type=spoof_type,
    )
    return row, data


def _bad_samples(
    out: Path, bad: int, codes: Sequence[str], rng: random.Random, good: bytes
) -> list[SampleRow]:
    """``bad`` unfit images, one kind after another (``good`` is cut for a truncated one)."""
    rows: list[SampleRow] = []
    cache: dict[str, bytes] = {}
    for j in range(bad):
        kind = BAD_KINDS[j % len(BAD_KINDS)]
        data = _bad_image(kind, rng, good, cache)
        suffix = {"gif": "gif", "too_large": "png"}.get(kind, "jpg")
        name = f"bad-{j:04d}-{kind}.{suffix}"
        (out / name).write_bytes(data)
        code = codes[j % len(codes)]
        rows.append(
            SampleRow(
                image=str(out / name),
                doc_type=code,
                card_side=FACE_SIDE if code == MAINLAND_ID else None,
                expect=_BAD_EXPECT[kind],
                sub_code=None,
                passed=None,
            )
        )
    return rows


def write_manifest(out_dir: Path, rows: Sequence[SampleRow]) -> None:
    """``manifest.jsonl`` (one JSON object a line) and ``manifest.csv`` (fields as JSON)."""
    with (out_dir / "manifest.jsonl").open("w", encoding="utf-8") as jsonl:
        for row in rows:
            jsonl.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")
    with (out_dir / "manifest.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    row.image,
                    row.doc_type,
                    row.card_side or "",
                    row.expect,
                    row.sub_code or "",
                    row.passed or "",
                    json.dumps(row.fields, ensure_ascii=False),
                    "true" if row.spoof else "false",
                    "" if row.quality is None else row.quality,
                ]
            )
