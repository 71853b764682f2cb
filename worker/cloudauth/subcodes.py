"""What each ``Result.SubCode`` means, whether it is billed, and what to do next.

From the provider's ``ResultObject.SubCode`` tables: seed 000 (CheckResult, ID document OCR
solution), seed 001 (CheckResult, face liveness) and seed 002 (DocOcrV2). Every code those tables
list is here, as the tables give it: 200, 204, 205, 206, 233 (face) and 211, 212, 213 (ID
document). Each table's "billed" column says *Yes* for every code; a code the tables do not list
is looked up as ``known=False`` with ``billed=None`` (unknown, not assumed free), never dropped.

Everything here is non-personal: a code, its category and advice, safe for records, events,
metrics labels and exports.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "SUB_CODES",
    "NextStep",
    "SubCode",
    "SubCodeCategory",
    "describe_sub_code",
    "sub_code_fields",
]


class SubCodeCategory(StrEnum):
    """The kind of outcome a sub code reports."""

    PASSED = "passed"
    FACE_MISMATCH = "face_mismatch"
    LIVENESS_ATTACK = "liveness_attack"
    POLICY = "policy"
    DUPLICATE_FACE = "duplicate_face"
    IMAGE_QUALITY = "image_quality"
    DOCUMENT_FRAUD = "document_fraud"
    DOCUMENT_TYPE = "document_type"
    UNKNOWN = "unknown"


class NextStep(StrEnum):
    """The recommended next step after a result with this sub code."""

    ACCEPT = "accept"
    RETRY_FACE_CAPTURE = "retry_face_capture"
    MANUAL_REVIEW = "manual_review"
    SECURE_DEVICE_AND_RETRY = "secure_device_and_retry"
    REVIEW_DUPLICATE = "review_duplicate"
    RECAPTURE_DOCUMENT = "recapture_document"
    CHECK_DOC_TYPE_AND_RECAPTURE = "check_doc_type_and_recapture"


@dataclass(frozen=True, slots=True)
class SubCode:
    """One sub code: meaning, billing, category and advice (all non-personal)."""

    code: str
    known: bool
    meaning: str
    billed: bool | None
    category: SubCodeCategory
    next_step: NextStep
    advice: str
    # Where the provider documents it: seed pages and the solutions its table names.
    sources: tuple[str, ...] = ()
    solutions: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The JSON-able form (for ``client`` output and exports)."""
        return {
            "code": self.code,
            "known": self.known,
            "meaning": self.meaning,
            "billed": self.billed,
            "category": self.category.value,
            "next_step": self.next_step.value,
            "advice": self.advice,
        }


_FACE = "001 CheckResult (face liveness)"
_OCR_CHECK = "000 CheckResult (ID document OCR)"
_OCR_DOC = "002 DocOcrV2"
_SERVER = "ID_OCR pure server-side integration (DocOcr)"
_MAX = "ID_OCR_MAX"
_SDK_APP = "ID_OCR App (SDK) integration"
_SDK_WEB = "ID_OCR Web (SDK) integration"

_TABLE = (
    SubCode(
        "200",
        True,
        "Authentication passed.",
        True,
        SubCodeCategory.PASSED,
        NextStep.ACCEPT,
        "Accept the result.",
        (_OCR_CHECK, _FACE, _OCR_DOC),
        ("General",),
    ),
    SubCode(
        "204",
        True,
        "The face comparison failed. The person may be different or the liveness photo is of "
        "low quality.",
        True,
        SubCodeCategory.FACE_MISMATCH,
        NextStep.RETRY_FACE_CAPTURE,
        "Let the user retry the face capture in good light; review if it fails again.",
        (_FACE,),
    ),
    SubCode(
        "205",
        True,
        "There are risks associated with liveness detection.",
        True,
        SubCodeCategory.LIVENESS_ATTACK,
        NextStep.MANUAL_REVIEW,
        "Do not retry automatically: review the attempt (possible presentation attack).",
        (_FACE,),
    ),
    SubCode(
        "206",
        True,
        "Business policy restriction.",
        True,
        SubCodeCategory.POLICY,
        NextStep.SECURE_DEVICE_AND_RETRY,
        "With safe mode on, the device or environment looked unsafe: ask the user to remove "
        "multi-instance apps, app cloners or virtual environments, then retry.",
        (_FACE,),
    ),
    SubCode(
        "233",
        True,
        "A similar face was detected.",
        True,
        SubCodeCategory.DUPLICATE_FACE,
        NextStep.REVIEW_DUPLICATE,
        "Review the matching face (duplicateFace in the result document) before accepting.",
        (_FACE,),
    ),
    SubCode(
        "211",
        True,
        "The quality or resolution of the document image does not meet requirements, or the "
        "image is incomplete.",
        True,
        SubCodeCategory.IMAGE_QUALITY,
        NextStep.RECAPTURE_DOCUMENT,
        "Capture the portrait side again: clear, normal exposure, complete, unobstructed, "
        "without a large angle.",
        (_OCR_CHECK, _OCR_DOC),
        (_SERVER, _MAX),
    ),
    SubCode(
        "212",
        True,
        "Document anti-counterfeiting detection indicates risk (possible rephotographing, "
        "tampering or photocopying).",
        True,
        SubCodeCategory.DOCUMENT_FRAUD,
        NextStep.MANUAL_REVIEW,
        "Do not retry automatically: review the document (spoofInfo in the result document).",
        (_OCR_CHECK, _OCR_DOC),
        (_SDK_APP, _SDK_WEB, _MAX),
    ),
    SubCode(
        "213",
        True,
        "The specified document type was not detected (recognition mode) or the document type "
        "could not be identified (classification mode).",
        True,
        SubCodeCategory.DOCUMENT_TYPE,
        NextStep.CHECK_DOC_TYPE_AND_RECAPTURE,
        "Check the DocType asked for; upload a clear, complete document image at a normal angle.",
        (_OCR_CHECK, _OCR_DOC),
        (_SERVER, _MAX),
    ),
)

SUB_CODES: dict[str, SubCode] = {entry.code: entry for entry in _TABLE}


def describe_sub_code(code: str | int) -> SubCode:
    """The catalogue entry of ``code``; a code the provider's tables do not list is
    ``known=False`` (billing unknown, category ``unknown``, next step manual review)."""
    text = str(code).strip()
    entry = SUB_CODES.get(text)
    if entry is not None:
        return entry
    return SubCode(
        text,
        False,
        "Not in the provider's sub-code tables.",
        None,
        SubCodeCategory.UNKNOWN,
        NextStep.MANUAL_REVIEW,
        "Review the result document; report the code so the catalogue can be updated.",
    )


def sub_code_fields(code: str | int | None) -> dict[str, object]:
    """The catalogue's view of ``code`` as flat record fields (all None without a code)."""
    if code is None or str(code).strip() == "":
        return {
            "sub_code_known": None,
            "sub_code_category": None,
            "sub_code_billed": None,
            "next_step": None,
        }
    entry = describe_sub_code(code)
    return {
        "sub_code_known": entry.known,
        "sub_code_category": entry.category.value,
        "sub_code_billed": entry.billed,
        "next_step": entry.next_step.value,
    }
