"""The sub-code catalogue against the provider's tables, one case per seed row."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from worker.cloudauth.subcodes import (
    SUB_CODES,
    NextStep,
    SubCodeCategory,
    describe_sub_code,
    sub_code_fields,
)

# (seed, code, billed, category, next step, words of the seed's description)
SEED_ROWS = [
    ("000", "200", True, SubCodeCategory.PASSED, NextStep.ACCEPT, "Authentication passed"),
    ("000", "211", True, SubCodeCategory.IMAGE_QUALITY, NextStep.RECAPTURE_DOCUMENT, "quality"),
    ("000", "212", True, SubCodeCategory.DOCUMENT_FRAUD, NextStep.MANUAL_REVIEW,
     "anti-counterfeiting"),
    ("000", "213", True, SubCodeCategory.DOCUMENT_TYPE, NextStep.CHECK_DOC_TYPE_AND_RECAPTURE,
     "document type"),
    ("001", "200", True, SubCodeCategory.PASSED, NextStep.ACCEPT, "Authentication passed"),
    ("001", "204", True, SubCodeCategory.FACE_MISMATCH, NextStep.RETRY_FACE_CAPTURE,
     "face comparison failed"),
    ("001", "205", True, SubCodeCategory.LIVENESS_ATTACK, NextStep.MANUAL_REVIEW,
     "liveness detection"),
    ("001", "206", True, SubCodeCategory.POLICY, NextStep.SECURE_DEVICE_AND_RETRY,
     "Business policy restriction"),
    ("001", "233", True, SubCodeCategory.DUPLICATE_FACE, NextStep.REVIEW_DUPLICATE,
     "similar face"),
    ("002", "200", True, SubCodeCategory.PASSED, NextStep.ACCEPT, "Authentication passed"),
    ("002", "211", True, SubCodeCategory.IMAGE_QUALITY, NextStep.RECAPTURE_DOCUMENT, "quality"),
    ("002", "212", True, SubCodeCategory.DOCUMENT_FRAUD, NextStep.MANUAL_REVIEW,
     "anti-counterfeiting"),
    ("002", "213", True, SubCodeCategory.DOCUMENT_TYPE, NextStep.CHECK_DOC_TYPE_AND_RECAPTURE,
     "document type"),
]  # fmt: skip


@pytest.mark.parametrize(("seed", "code", "billed", "category", "step", "words"), SEED_ROWS)
def test_each_seed_row_is_catalogued(
    seed: str, code: str, billed: bool, category: SubCodeCategory, step: NextStep, words: str
) -> None:
    entry = describe_sub_code(code)
    assert entry.known
    assert entry.billed is billed
    assert entry.category is category
    assert entry.next_step is step
    assert words.lower() in entry.meaning.lower()
    assert any(source.startswith(seed) for source in entry.sources)


def test_the_catalogue_holds_exactly_the_seed_codes() -> None:
    assert sorted(SUB_CODES) == sorted({row[1] for row in SEED_ROWS})


SEEDS = Path("/work/shared/seeds")


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the provider's pages are not available here")
def test_every_code_of_the_seed_tables_is_known() -> None:
    """Codes read from each page's ``ResultObject.SubCode`` table, billed column included."""
    found: set[str] = set()
    for page in sorted(SEEDS.glob("*.txt")):
        text = page.read_text()
        table = text.split("ResultObject.SubCode error codes")[-1]
        table = table.split("OCR re")[0]  # the field tables that follow the sub-code table
        for code, billed in re.findall(r"\n(2\d\d)\n\n(Yes|No)\n", table):
            found.add(code)
            assert describe_sub_code(code).billed is (billed == "Yes"), (page.name, code)
    assert found == set(SUB_CODES)


@pytest.mark.parametrize("code", ["201", "999", "0", "abc"])
def test_unknown_codes_are_flagged_not_dropped(code: str) -> None:
    entry = describe_sub_code(code)
    assert entry.code == code
    assert entry.known is False
    assert entry.billed is None
    assert entry.category is SubCodeCategory.UNKNOWN
    assert entry.next_step is NextStep.MANUAL_REVIEW


def test_record_fields() -> None:
    assert sub_code_fields(212) == {
        "sub_code_known": True,
        "sub_code_category": "document_fraud",
        "sub_code_billed": True,
        "next_step": "manual_review",
    }
    assert sub_code_fields("201")["sub_code_known"] is False
    assert set(sub_code_fields(None).values()) == {None}
    # Non-personal and JSON-able.
    for entry in SUB_CODES.values():
        json.dumps(entry.as_dict())
