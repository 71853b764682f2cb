"""Typed results of CheckResult, DocOcrV2 and Initialize (pydantic, aliases = wire names).

The provider returns ``Ext*`` members as JSON *strings*; they are parsed here, tolerating
objects, empty strings, ``"{}"`` and malformed JSON (which leaves the field None - the original
stays in ``raw``). Unknown fields are kept (``extra="allow"``) so nothing the provider adds is
lost on the way to storage. Scalars are coerced leniently (``"Passed": true`` -> ``"Y"``,
``"SubCode": 200`` -> ``"200"``) because the SDK passes such values through unchecked.

``repr()``/``str()`` of every model show only non-personal fields (results, scores, ids of the
call); names, ID numbers, images and URLs appear as ``"<redacted>"``. ``redacted()`` returns
that view as a dict for logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel, to_pascal

from worker.observability.personal import PERSONAL

REDACTED = "<redacted>"

# Wire keys whose values are safe to show in logs: outcomes, scores and the call's own ids.
SAFE_KEYS = frozenset(
    {
        "RequestId",
        "TransactionId",
        "Passed",
        "SubCode",
        "ocrIdPassed",
        "spoofResult",
        "spoofType",
        "idFaceQualityScore",
        "faceAttack",
        "faceAttackScore",
        "guardRiskScore",
        "faceComparisonScore",
        "faceRegistrationResult",
        "facePassed",
        "authorityComparisonScore",
        "score",
    }
)


def redact(value: Any, key: str | None = None) -> Any:
    """A copy of a dumped model where every value not under a ``SAFE_KEYS`` key is hidden."""
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list) and any(isinstance(v, Mapping) for v in value):
        return [redact(v, key) for v in value]
    if key in SAFE_KEYS or value is None:
        return value
    return REDACTED


def _personal(alias: str | None = None) -> Any:
    """A field that holds personal data (or a link to it): redacted in logs and Sentry by
    name (``worker.observability.personal``)."""
    return Field(None, alias=alias, json_schema_extra=PERSONAL)


# --- lenient scalar coercion --------------------------------------------------------------


def _to_str(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _to_float(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _to_str_list(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text.startswith("["):
            value = _loads(text)
            if not isinstance(value, list):
                return None
        else:
            return [text]
    if isinstance(value, list):
        return [_to_str(v) for v in value if v is not None]
    return None


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # a JSON string nested too deep is malformed too
        return None


def _json_object(value: Any) -> Any:
    """JSON string or object -> dict; empty / ``{}`` / malformed / non-object -> None."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        value = _loads(text) if text else None
    if isinstance(value, dict) and value:
        return value
    return None


def _json_object_list(value: Any) -> Any:
    """JSON array (string or list) of objects; entries that are not objects are dropped."""
    if isinstance(value, str):
        text = value.strip()
        value = _loads(text) if text else None
    if isinstance(value, dict):
        value = [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else None


def _json_any(value: Any) -> Any:
    """Parse a JSON object/array string; keep any other string as it is."""
    if isinstance(value, bool | int | float):
        return _to_str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[0] in "[{":
            parsed = _loads(text)
            if parsed is not None:
                return parsed if parsed else None
        return value
    return value


WStr = Annotated[str | None, BeforeValidator(_to_str)]
WFloat = Annotated[float | None, BeforeValidator(_to_float)]
WStrList = Annotated[list[str] | None, BeforeValidator(_to_str_list)]
JsonDict = Annotated[dict[str, Any] | None, BeforeValidator(_json_object)]
JsonAny = Annotated[dict[str, Any] | list[Any] | str | None, BeforeValidator(_json_any)]


class WireModel(BaseModel):
    """Base: wire-name aliases, unknown fields kept, safe repr."""

    model_config = ConfigDict(
        extra="allow", populate_by_name=True, alias_generator=to_camel, protected_namespaces=()
    )

    def redacted(self) -> dict[str, Any]:
        """The model as a wire-named dict with personal data replaced by ``"<redacted>"``."""
        dumped = self.model_dump(by_alias=True, exclude_none=True)
        result: dict[str, Any] = redact(dumped)
        return result

    def wire(self) -> dict[str, Any]:
        """The parsed model as a wire-named, JSON-able dict (includes personal data)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        return list(self.redacted().items())


# --- Ext* members -------------------------------------------------------------------------


class OcrIdInfo(WireModel):
    """OCR fields: the union over every 8-digit DocType of seeds 000/002 (see ``doctypes``)."""

    # Hong Kong identity card (2003/2018)
    name: WStr = _personal()
    english_name: WStr = _personal()
    name_code: WStr = _personal()
    sex: WStr = _personal()
    birth_date: WStr = _personal()
    id_number: WStr = _personal()
    current_issue_date: WStr = _personal()
    first_issue_date: WStr = _personal()
    is_permanent: WStr = _personal()
    symbols: WStr = _personal()
    # permits (exit-entry, mainland travel permits for HK/Macao and Taiwan residents)
    issue_date: WStr = _personal()
    expiry_date: WStr = _personal()
    place_of_issue: WStr = _personal()
    origin_of_issue: WStr = _personal()
    # e-passport (MRZ) and Macao identity card
    surname: WStr = _personal()
    givenname: WStr = _personal()
    passport_no: WStr = _personal()
    nationality: WStr = _personal()
    country_code: WStr = _personal()
    surname_cn: WStr = _personal("surnameCN")
    givenname_cn: WStr = _personal("givennameCN")
    place_of_birth: WStr = _personal()
    # mainland resident identity card (front)
    ethnicity: WStr = _personal()
    address: WStr = _personal()
    province: WStr = _personal()
    city: WStr = _personal()


class OcrIdBackInfo(WireModel):
    """Back side of the mainland resident identity card (``CardSide=OCR_ID_NATIONAL_EMBLEM``)."""

    origin_of_issue: WStr = _personal()
    issue_date: WStr = _personal()
    expire_date: WStr = _personal()


class SpoofInfo(WireModel):
    """Document anti-spoofing: ``spoofResult`` Y (risk) / N, ``spoofType`` e.g. SCREEN_REMARK."""

    spoof_result: WStr = None
    spoof_type: WStrList = None


class ExtIdInfo(WireModel):
    """``ExtIdInfo``: document OCR outcome, anti-spoofing, images (Base64) and quality score."""

    ocr_id_info: Annotated[OcrIdInfo | None, BeforeValidator(_json_object)] = _personal()
    ocr_id_passed: WStr = None
    spoof_info: Annotated[SpoofInfo | None, BeforeValidator(_json_object)] = None
    spoof_back_info: Annotated[SpoofInfo | None, BeforeValidator(_json_object)] = None
    id_image: WStr = _personal()
    id_back_image: WStr = _personal()
    ocr_id_edit_info: Annotated[OcrIdInfo | None, BeforeValidator(_json_object)] = _personal()
    ocr_id_back_info: Annotated[OcrIdBackInfo | None, BeforeValidator(_json_object)] = _personal()
    id_face_quality_score: WFloat = None


class DuplicateFace(WireModel):
    """One entry of ``duplicateFace``: a similar face already registered."""

    face_group_code: WStr = None
    face_id: WStr = _personal()
    merchant_user_id: WStr = _personal()
    score: WFloat = None


class ExtFaceInfo(WireModel):
    """``ExtFaceInfo``: liveness, face comparison and evidence (``docVideoUrl`` valid 15 min)."""

    face_img: WStr = _personal()
    face_attack: WStr = None
    doc_video_url: WStr = _personal()
    face_age: WStr = _personal()
    face_gender: WStr = _personal()
    face_attack_score: WFloat = None
    guard_risk_score: WFloat = None
    face_comparison_score: WFloat = None
    face_registration_result: WStr = None
    face_registration_id: WStr = _personal("faceRegistrationID")
    duplicate_face: Annotated[list[DuplicateFace] | None, BeforeValidator(_json_object_list)] = (
        _personal()
    )
    device_token: WStr = _personal()
    face_passed: WStr = None
    authority_comparison_score: WFloat = None


# --- operation results --------------------------------------------------------------------


def _result_of(body: Mapping[str, Any]) -> dict[str, Any]:
    result = body.get("Result")
    if isinstance(result, str):
        result = _json_object(result)
    return dict(result) if isinstance(result, Mapping) else {}


class ResultModel(WireModel):
    """Base of operation results: PascalCase wire names, request id, the raw ``Result``."""

    model_config = ConfigDict(alias_generator=to_pascal)

    request_id: WStr = None
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)
    """The ``Result`` object exactly as received (contains personal data)."""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Build from a decoded success body ``{"RequestId", "Code", "Result": {...}}``."""
        result = _result_of(body)
        fields = {k: v for k, v in result.items() if k not in ("RequestId", "Raw")}
        model = cls.model_validate({**fields, "RequestId": body.get("RequestId")})
        model.raw = result
        return model

    @property
    def passed_bool(self) -> bool | None:
        """``Passed`` as a bool: Y -> True, N -> False, absent or other -> None."""
        passed = getattr(self, "passed", None)
        if passed is None:
            return None
        flag = passed.strip().upper()
        if flag in ("Y", "T", "TRUE"):
            return True
        if flag in ("N", "F", "FALSE"):
            return False
        return None


class CheckResultResult(ResultModel):
    """CheckResult's ``Result`` plus the request id."""

    passed: WStr = None
    sub_code: WStr = None
    ext_id_info: Annotated[ExtIdInfo | None, BeforeValidator(_json_object)] = None
    ext_face_info: Annotated[ExtFaceInfo | None, BeforeValidator(_json_object)] = None
    ext_basic_info: JsonDict = None
    ext_risk_info: JsonDict = None
    ext_info: JsonDict = None
    ekyc_result: JsonAny = None
    ext_source_info: JsonAny = None


class DocOcrResult(ResultModel):
    """DocOcrV2's ``Result`` plus the request id."""

    transaction_id: WStr = None
    passed: WStr = None
    sub_code: WStr = None
    ext_id_info: Annotated[ExtIdInfo | None, BeforeValidator(_json_object)] = None


class InitializeResult(ResultModel):
    """Initialize's ``Result`` plus the request id (``transaction_url`` is single-use)."""

    transaction_id: WStr = None
    transaction_url: WStr = _personal()
    protocol: WStr = None
    client_cfg: WStr = None
