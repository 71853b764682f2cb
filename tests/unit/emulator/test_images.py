"""Image validation, OCR field derivation and the sample generator round trip."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from worker.emulator.dococr import ocr_outcome, read_picture
from worker.emulator.doctypes import (
    DOC_TYPES,
    EMBLEM_SIDE,
    FACE_SIDE,
    MAINLAND_ID,
    canonical_doc_type,
    derive_fields,
    hkid_number,
    mainland_id_number,
)
from worker.emulator.errors import ApiError
from worker.emulator.imagecheck import inspect_image, validate_ocr_image
from worker.emulator.render import render_card
from worker.emulator.samples import generate_samples


def encode(size: tuple[int, int], fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (120, 130, 140)).save(out, fmt, **options)
    return out.getvalue()


def problem(data: bytes) -> str:
    try:
        validate_ocr_image(data)
    except ApiError as exc:
        return exc.code
    return "ok"


def test_valid_jpeg_and_png_pass_with_their_sizes() -> None:
    info = validate_ocr_image(encode((640, 480), "JPEG"))
    assert (info.format, info.width, info.height) == ("jpeg", 640, 480)
    info = validate_ocr_image(encode((200, 8192), "PNG"))
    assert (info.format, info.width, info.height) == ("png", 200, 8192)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (encode((199, 400), "JPEG"), "UnqualifiedPhoto"),
        (encode((400, 8193), "PNG"), "UnqualifiedPhoto"),
        (encode((400, 400), "GIF"), "UnqualifiedPhoto"),
        (encode((400, 400), "BMP"), "UnqualifiedPhoto"),
        (b"not an image at all", "UnqualifiedPhoto"),
        (b"", "UnqualifiedPhoto"),
        (encode((640, 480), "JPEG")[:300], "UnqualifiedPhoto"),
        (encode((640, 480), "PNG")[:-20], "UnqualifiedPhoto"),
    ],
)
def test_invalid_images(data: bytes, code: str) -> None:
    assert problem(data) == code


def test_too_large_is_checked_on_decoded_bytes() -> None:
    big = encode((640, 600), "PNG", compress_level=0)
    assert len(big) > 1024 * 1024
    assert problem(big) == "ToolargeImage"


def test_progressive_jpeg_dimensions() -> None:
    info = inspect_image(encode((300, 250), "JPEG", progressive=True))
    assert info is not None
    assert (info.width, info.height) == (300, 250)


def test_doc_type_aliases_and_field_sets() -> None:
    assert canonical_doc_type("00000012") == "000000012"
    assert canonical_doc_type("99999999") is None
    for code, spec in DOC_TYPES.items():
        assert list(derive_fields(code, FACE_SIDE, b"s")) == list(spec.front)
    back = derive_fields(MAINLAND_ID, EMBLEM_SIDE, b"s")
    assert list(back) == ["originOfIssue", "issueDate", "expiryDate"]
    # CardSide matters only for the mainland ID card.
    assert derive_fields("00000006", EMBLEM_SIDE, b"s") == derive_fields(
        "00000006", FACE_SIDE, b"s"
    )


def test_derived_fields_are_deterministic_and_seed_dependent() -> None:
    assert derive_fields("01000000", FACE_SIDE, b"a") == derive_fields("01000000", FACE_SIDE, b"a")
    assert derive_fields("01000000", FACE_SIDE, b"a") != derive_fields("01000000", FACE_SIDE, b"b")


def test_id_numbers_carry_valid_check_characters() -> None:
    import random

    rng = random.Random(3)
    for _ in range(50):
        number = hkid_number(rng)
        letter, digits, check = number[0], number[1:7], number[8]
        total = (
            36 * 9 + (ord(letter) - 55) * 8 + sum(int(d) * (7 - i) for i, d in enumerate(digits))
        )
        value = 10 if check == "A" else int(check)
        assert (total + value) % 11 == 0
        mainland = mainland_id_number(rng, "1990-02-21")
        assert len(mainland) == 18
        assert mainland[6:14] == "19900221"


def test_plain_images_get_fields_from_their_hash() -> None:
    data = encode((640, 480), "JPEG")
    reading = read_picture(data, "00000009", FACE_SIDE, None)
    assert reading.sub_code == "200"
    assert read_picture(data, "00000009", FACE_SIDE, None) == reading
    assert set(reading.fields) == set(DOC_TYPES["00000009"].front)
    # Plain pictures are good enough for every IdThreshold mode.
    assert reading.quality >= 85
    for mode in "0123":
        assert ocr_outcome(reading, spoof_check=True, threshold=mode) == "200"


def test_embedded_fields_and_sub_code_are_read_back() -> None:
    fields = derive_fields("00000007", FACE_SIDE, b"x")
    payload = json.dumps(
        {"doc_type": "00000007", "card_side": FACE_SIDE, "fields": fields, "sub_code": "212"}
    )
    for fmt in ("jpeg", "png"):
        data = render_card("00000007", FACE_SIDE, fields, fmt, payload)
        info = validate_ocr_image(data)
        reading = read_picture(data, "00000007", FACE_SIDE, info.embedded)
        assert (reading.sub_code, reading.fields) == ("212", fields)
        assert reading.spoof_type == ["SCREEN_REMARK"]  # the default when none is embedded
        assert ocr_outcome(reading, spoof_check=True, threshold="3") == "212"
        # Without anti-spoofing nothing looks for the spoof.
        assert ocr_outcome(reading, spoof_check=False, threshold="3") == "200"
        # Asking for another document type than the picture shows: type not detected.
        assert read_picture(data, "00000009", FACE_SIDE, info.embedded).sub_code == "213"


def test_samples_round_trip(tmp_path: Path) -> None:
    rows = generate_samples(tmp_path, 2000, bad=10, seed=7)
    assert len(rows) == 2010
    with (tmp_path / "manifest.jsonl").open(encoding="utf-8") as handle:
        manifest = [json.loads(line) for line in handle]
    with (tmp_path / "manifest.csv").open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(manifest) == len(table) == 2010
    assert {r["expect"] for r in manifest} == {
        "ok",
        "211",
        "212",
        "213",
        "UnqualifiedPhoto",
        "ToolargeImage",
    }
    formats = set()
    for row, line in zip(manifest, table, strict=True):
        assert line["image"] == row["image"]
        assert json.loads(line["fields"]) == row["fields"]
        data = Path(row["image"]).read_bytes()
        if row["sub_code"] is None:
            assert problem(data) == row["expect"]
            continue
        info = validate_ocr_image(data)
        formats.add(info.format)
        side = row["card_side"] or FACE_SIDE
        reading = read_picture(data, row["doc_type"], side, info.embedded)
        assert reading.quality == row["quality"] == float(line["quality"])
        sub_code = ocr_outcome(reading, spoof_check=row["spoof"], threshold="3")
        assert sub_code == row["sub_code"]
        assert line["spoof"] == ("true" if row["spoof"] else "false")
        if sub_code in ("200", "212"):
            assert reading.fields == row["fields"]
    assert formats == {"jpeg", "png"}
    assert {r["card_side"] for r in manifest if r["doc_type"] == MAINLAND_ID} == {
        FACE_SIDE,
        EMBLEM_SIDE,
    }


def test_samples_for_one_doc_type_and_seed_determinism(tmp_path: Path) -> None:
    first = generate_samples(tmp_path / "a", 12, doc_type="01000000", seed=3)
    second = generate_samples(tmp_path / "b", 12, doc_type="01000000", seed=3)
    assert {r.doc_type for r in first} == {"01000000"}
    assert [r.fields for r in first] == [r.fields for r in second]
    with pytest.raises(ValueError, match="unknown doc type"):
        generate_samples(tmp_path / "c", 1, doc_type="nope")
