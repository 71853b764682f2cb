"""Deterministic ids and the chunk codec."""

from __future__ import annotations

import io
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from worker.batch import (
    ItemSpec,
    ItemStatus,
    ManifestHasher,
    batch_id_of_file,
    batch_id_of_stream,
    decode_chunk,
    default_merchant_user_id,
    encode_chunk,
    merchant_biz_id,
)
from worker.cloudauth.params import check_merchant_biz_id, check_merchant_user_id
from worker.keys import validate_id


def test_batch_id_depends_on_bytes_and_options(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"image,doc_type\na.jpg,01000000\n")
    first = batch_id_of_file(path)
    assert first == batch_id_of_file(path)
    assert re.fullmatch(r"b[0-9a-f]{20}", first)
    validate_id(first, "batch_id")
    assert first != batch_id_of_file(path, {"default_doc_type": "01000000"})
    path.write_bytes(b"image,doc_type\na.jpg,01000000\n\n")
    assert first != batch_id_of_file(path)


@given(st.binary(max_size=4096), st.integers(1, 64))
def test_streamed_hash_does_not_depend_on_block_boundaries(data: bytes, step: int) -> None:
    whole, size = batch_id_of_stream(io.BytesIO(data))
    hasher = ManifestHasher()
    for start in range(0, len(data), step):
        hasher.update(data[start : start + step])
    assert hasher.batch_id() == whole
    assert size == len(data)


def test_provider_ids_fit_the_provider_rules() -> None:
    biz = merchant_biz_id("b0123", "r456")
    assert check_merchant_biz_id(biz, "DocOcrV2") == biz
    assert biz != merchant_biz_id("b0123", "r457")
    user = default_merchant_user_id("b0123", "r456")
    assert check_merchant_user_id(user, "DocOcrV2") == user


specs = st.builds(
    ItemSpec,
    source=st.text(min_size=1, max_size=60),
    doc_type=st.sampled_from(["01000000", "00000001", "000000011"]),
    card_side=st.sampled_from([None, "OCR_ID_FACE", "OCR_ID_NATIONAL_EMBLEM"]),
    spoof=st.booleans(),
    face_quality=st.booleans(),
    id_threshold=st.sampled_from([None, "0", "3"]),
    merchant_user_id=st.one_of(st.none(), st.text(min_size=1, max_size=10)),
    explicit_id=st.one_of(st.none(), st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True)),
)


@given(st.lists(st.tuples(st.integers(1, 10**7), st.one_of(st.none(), specs)), max_size=50))
def test_chunk_codec_round_trips(rows: list[tuple[int, ItemSpec | None]]) -> None:
    decoded = decode_chunk(encode_chunk(rows), 400)
    assert [(r.line, r.spec) for r in decoded] == rows
    assert [r.seq for r in decoded] == list(range(400, 400 + len(rows)))
    assert [r.row for r in decoded] == list(range(401, 401 + len(rows)))
    # Derived ids survive the round trip (they are recomputed, not stored).
    assert [r.spec.item_id for r in decoded if r.spec] == [s.item_id for _, s in rows if s]


def test_chunks_are_compact() -> None:
    rows: list[tuple[int, ItemSpec | None]] = [
        (i + 2, ItemSpec(source=f"/data/backlog/2024/{i:07d}.jpg", doc_type="01000000"))
        for i in range(200)
    ]
    assert len(encode_chunk(rows)) < 200 * 16


def test_status_codes_are_single_bytes() -> None:
    for status in ItemStatus:
        assert len(status.code) == 1
        assert ItemStatus.from_code(status.code) is status
    assert ItemStatus.from_code(b"") is ItemStatus.PENDING
