"""Manifest parsing and row validation (no I/O beyond reading the manifest itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.batch import (
    ItemSpec,
    ManifestError,
    RowError,
    check_encoding,
    detect_format,
    iter_csv,
    iter_jsonl,
    parse_source,
    validate_row,
)


def test_valid_row_is_normalised() -> None:
    spec = validate_row(
        {
            "image": " a.jpg ",
            "doc_type": "00000001",
            "card_side": "ocr_id_national_emblem",
            "spoof": "T",
            "face_quality": "yes",
            "id_threshold": 2,
            "merchant_user_id": "u-1",
            "item_id": "doc_1",
            "notes": "ignored",
        }
    )
    assert spec == ItemSpec(
        source="a.jpg",
        doc_type="00000001",
        card_side="OCR_ID_NATIONAL_EMBLEM",
        spoof=True,
        face_quality=True,
        id_threshold="2",
        merchant_user_id="u-1",
        explicit_id="doc_1",
    )
    assert spec.item_id == "doc_1"


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ({"doc_type": "01000000"}, "no image source"),
        ({"image": "   ", "doc_type": "01000000"}, "no image source"),
        ({"image": "a.jpg"}, "doc_type: required"),
        ({"image": "a.jpg", "doc_type": "1000000"}, "unknown DocType"),
        ({"image": "a.jpg", "doc_type": "01000000", "card_side": "OCR_ID_FACE"}, "mainland"),
        ({"image": "a.jpg", "doc_type": "00000001", "card_side": "back"}, "card_side"),
        ({"image": "a.jpg", "doc_type": "01000000", "spoof": "maybe"}, "spoof"),
        ({"image": "a.jpg", "doc_type": "01000000", "id_threshold": "4"}, "id_threshold"),
        ({"image": "a.jpg", "doc_type": "01000000", "item_id": "../x"}, "item_id"),
        ({"image": "a.jpg", "doc_type": "01000000", "merchant_user_id": "x" * 65}, "merchant"),
        ({"image": "ftp://h/a.jpg", "doc_type": "01000000"}, "unsupported"),
        ({"image": "s3://B/a.jpg", "doc_type": "01000000"}, "s3://bucket/key"),
        ({"image": "https:///a.jpg", "doc_type": "01000000"}, "no host"),
    ],
)
def test_invalid_rows_say_why(row: dict[str, object], fragment: str) -> None:
    with pytest.raises(RowError) as caught:
        validate_row(row)
    assert fragment in caught.value.reason


def test_default_doc_type_and_aliases() -> None:
    assert validate_row({"path": "a.png"}, "01000000").doc_type == "01000000"
    assert validate_row({"url": "https://h/a.png", "doc_type": "00000012"}).doc_type == "00000012"


def test_content_ids_are_stable_and_distinguish_rows() -> None:
    base = {"image": "a.jpg", "doc_type": "01000000"}
    one = validate_row(base).item_id
    assert one == validate_row(dict(base)).item_id
    assert one != validate_row({**base, "spoof": True}).item_id
    assert one != validate_row({**base, "image": "b.jpg"}).item_id
    assert one.startswith("r")
    assert len(one) == 25


def test_sources() -> None:
    assert parse_source("img/a.jpg", "/data").path == "/data/img/a.jpg"
    assert parse_source("/abs/a.jpg", "/data").path == "/abs/a.jpg"
    assert parse_source("file:///abs/a%20b.jpg").path == "/abs/a b.jpg"
    s3 = parse_source("s3://my-bucket/k/a.jpg")
    assert (s3.kind, s3.bucket, s3.key) == ("s3", "my-bucket", "k/a.jpg")
    assert parse_source("HTTPS://h.example/a.jpg?sig=1").kind == "http"
    with pytest.raises(RowError):
        parse_source("file://remote/a.jpg")


def test_csv_rows_lines_and_header_checks(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        '\ufeffImage,Doc Type,notes\na.jpg,01000000,"two\nlines"\n\nb.jpg,bad,x\nc.jpg,01000000\n',
        encoding="utf-8",
    )
    rows = list(iter_csv(path))
    assert [(r.row, r.line) for r in rows] == [(1, 2), (2, 5), (3, 6)]
    assert rows[0].spec is not None
    assert rows[1].error is not None
    assert rows[1].error.startswith("doc_type")
    (tmp_path / "no-image.csv").write_text("file,doc_type\na,01000000\n")
    with pytest.raises(ManifestError, match="no image source column"):
        list(iter_csv(tmp_path / "no-image.csv"))
    (tmp_path / "no-doc.csv").write_text("image\na.jpg\n")
    with pytest.raises(ManifestError, match="doc_type"):
        list(iter_csv(tmp_path / "no-doc.csv"))
    assert next(r.spec for r in iter_csv(tmp_path / "no-doc.csv", "01000000")) is not None


def test_jsonl_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"image": "a.jpg", "doc_type": "01000000"}),
        "",
        "[1, 2]",
        "{broken",
        json.dumps({"image": "b.jpg", "doc_type": "01000000", "spoof": True}),
    ]
    path.write_text("\n".join(lines) + "\n")
    rows = list(iter_jsonl(path))
    assert [(r.row, r.line, r.error) for r in rows] == [
        (1, 1, None),
        (2, 3, "not a JSON object"),
        (3, 4, "not valid JSON"),
        (4, 5, None),
    ]


def test_format_detection(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("image\n")
    (tmp_path / "a.ndjson").write_text("{}\n")
    (tmp_path / "noext").write_text('\n  {"image": "x"}\n')
    (tmp_path / "other").write_text("image,doc_type\n")
    assert detect_format(tmp_path / "a.csv") == "csv"
    assert detect_format(tmp_path / "a.ndjson") == "jsonl"
    assert detect_format(tmp_path / "noext") == "jsonl"
    assert detect_format(tmp_path / "other") == "csv"
    assert detect_format(tmp_path / "other", "jsonl") == "jsonl"
    with pytest.raises(ManifestError):
        detect_format(tmp_path / "other", "xml")


def test_encoding_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"image,doc_type\na.jpg,01000000\n\xff\xfe,01000000\n")
    with pytest.raises(ManifestError) as caught:
        check_encoding(path)
    assert caught.value.line == 3


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
    ).filter(lambda s: s.strip() and "://" not in s),
    st.booleans(),
    st.booleans(),
)
def test_any_local_path_is_accepted_and_ids_are_deterministic(
    path: str, spoof: bool, quality: bool
) -> None:
    row = {"image": path, "doc_type": "01000000", "spoof": spoof, "face_quality": quality}
    spec = validate_row(row)
    assert spec.source == path.strip()
    assert validate_row(row).item_id == spec.item_id
