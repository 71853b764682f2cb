"""Where each wire parameter goes: query string or form body (spec §2.3), and ``ApiCall``.

``place`` does no validation; the ``*_call`` functions of ``worker.cloudauth.params`` check the
arguments first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

CHECK_RESULT = "CheckResult"
DOC_OCR_V2 = "DocOcrV2"
INITIALIZE = "Initialize"

# Calls that may be sent again when the outcome of an attempt is unknown: CheckResult is a read,
# Initialize at worst leaves an unused transaction behind. Every other action - DocOcrV2, and any
# action not listed - is treated as billed: an attempt that may have been processed is held back.
REPEATABLE_ACTIONS = frozenset({CHECK_RESULT, INITIALIZE})


def is_repeatable(action: str) -> bool:
    """Whether ``action`` may be repeated after an attempt whose outcome is unknown."""
    return action in REPEATABLE_ACTIONS


# The one product plan DocOcrV2 takes (seed 002: "Set to ID_OCR_MIN for the ID document OCR API").
DOC_OCR_PRODUCT = "ID_OCR_MIN"

# Operations that take ``SceneCode``, a console label for querying records: Initialize (SDK
# ``InitializeRequest``, spec §5.2) and DocOcrV2 (seed 002's request parameters; the 3.23.1 SDK
# model lacks it, and like every parameter outside ``BODY_PARAMS`` it goes in the query).
# CheckResult takes none: it reads a transaction whose scene was set at Initialize.
SCENE_CODE_ACTIONS = frozenset({DOC_OCR_V2, INITIALIZE})

# Parameters the SDK puts in the form body; everything else goes in the query (spec §2.3).
# None = the operation has no body map at all (no content-type header either).
BODY_PARAMS: dict[str, frozenset[str] | None] = {
    CHECK_RESULT: None,
    DOC_OCR_V2: frozenset({"IdOcrPictureBase64", "IdOcrPictureFile"}),
    INITIALIZE: frozenset({"FacePictureBase64"}),
}

# Every request field of InitializeRequest in SDK 3.23.1 (spec §5.2).
INITIALIZE_FIELDS = frozenset(
    [
        "AppQualityCheck",
        "Authorize",
        "AutoDocPageConfig",
        "AutoRegistration",
        "CallbackToken",
        "CallbackUrl",
        "ChameleonFrameEnable",
        "Crop",
        "DateOfBirth",
        "DateOfExpiry",
        "DocName",
        "DocNo",
        "DocPageConfig",
        "DocScanMode",
        "DocType",
        "DocVideo",
        "DocumentNumber",
        "EditOcrResult",
        "Email",
        "ExperienceCode",
        "FaceAttributeCheck",
        "FaceGroupCodes",
        "FacePictureBase64",
        "FacePictureUrl",
        "FaceRegisterGroupCode",
        "FaceVerifyThreshold",
        "IdFaceQuality",
        "IdSpoof",
        "IdThreshold",
        "LanguageConfig",
        "MRTDInput",
        "MerchantBizId",
        "MerchantUserId",
        "MetaInfo",
        "Mobile",
        "Model",
        "NeedMultiFaceCheck",
        "Ocr",
        "OcrValueStandard",
        "Pages",
        "ProcedurePriority",
        "ProductCode",
        "ProductFlow",
        "ReturnFaces",
        "ReturnUrl",
        "SaveFacePicture",
        "SceneCode",
        "SecurityLevel",
        "ShowAlbumIcon",
        "ShowGuidePage",
        "ShowOcrResult",
        "StyleConfig",
        "TargetFacePicture",
        "TargetFacePictureUrl",
        "TemplateConfig",
        "TemplateRanCount",
        "TemplateType",
        "UpdateFaceIfUserExists",
        "UseNFC",
        "VerifyModel",
    ]
)


@dataclass(frozen=True, slots=True)
class ApiCall:
    """A validated call, parameters already placed (values are raw, not yet encoded).

    ``query`` keeps the wire order (sorted, as the generated SDK code inserts them); ``body`` is
    None for operations without a body map, else the (possibly empty) form fields.
    ``product_code`` selects the limiter bucket. ``repeatable`` is false for billed calls that
    must not be sent twice when the outcome of the first attempt is unknown.
    """

    action: str
    product_code: str
    query: tuple[tuple[str, str], ...]
    body: tuple[tuple[str, str], ...] | None
    repeatable: bool = True


def place(
    action: str,
    params: Mapping[str, str | None],
    *,
    product_code: str,
    repeatable: bool | None = None,
) -> ApiCall:
    """Split wire parameters between query and body per spec §2.3 (no validation).

    ``repeatable`` defaults to ``is_repeatable(action)``.
    """
    if action not in BODY_PARAMS:
        raise ValueError(f"unknown action {action!r}")
    if repeatable is None:
        repeatable = is_repeatable(action)
    body_names = BODY_PARAMS[action]
    present = sorted((k, v) for k, v in params.items() if v is not None)
    if body_names is None:
        return ApiCall(action, product_code, tuple(present), None, repeatable)
    query = tuple((k, v) for k, v in present if k not in body_names)
    body = tuple((k, v) for k, v in present if k in body_names)
    return ApiCall(action, product_code, query, body, repeatable)
