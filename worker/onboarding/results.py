"""What the onboarding flow writes: the result document (S3), the record and its event (Redis).

The record and the event carry outcomes, ids and pointers to S3 objects - never images, links
or personal data; the full result (OCR fields included) goes only to the S3 document, written
with server-side encryption, where images and the presigned video link are replaced by
pointers ``{"key", "sha256", "size"}`` to the archived copies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.cloudauth.subcodes import NextStep, SubCodeCategory, sub_code_fields
from worker.jobs.onboarding import OnboardingJob
from worker.keys import Evidence

if TYPE_CHECKING:
    from worker.cloudauth.models import CheckResultResult
    from worker.evidence import VideoArchive
    from worker.storage import StoredObject

RECORD_VERSION = 1
EVENT_TYPE = "onboarding.result"

Status = Literal["complete", "evidence_lost"]
VideoStatus = Literal["stored", "reused", "absent", "lost"]


class ObjectPointer(BaseModel):
    """Where an archived object is: its S3 key, SHA-256 (hex) and size in bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    sha256: str | None = None
    size: int = Field(ge=0)


class ResultRecord(BaseModel):
    """The result of one onboarding transaction, as downstream systems read it.

    Stored in Redis (``<ns>result:tx:<tid>``), announced on the results stream (``build_event``),
    posted to the result webhook. Outcome, ids and pointers to S3 objects only: never images,
    links or personal data (those are in the encrypted S3 result document, ``result``).
    Its JSON Schema is published in docs/reference/result-record.md (``worker.devtools.docsgen``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = RECORD_VERSION
    transaction_id: str
    status: Status
    passed: Literal["Y", "N"] | None
    sub_code: str | None
    sub_code_known: bool | None = Field(
        None, description="false when the provider's sub-code tables do not list sub_code"
    )
    sub_code_category: SubCodeCategory | None = Field(
        None, description="what kind of outcome sub_code reports (worker.cloudauth.subcodes)"
    )
    sub_code_billed: bool | None = Field(
        None, description="whether the provider bills a result with this sub code (null: unknown)"
    )
    next_step: NextStep | None = Field(
        None, description="the recommended next step for this sub code"
    )
    product_code: str
    request_id: str | None
    completed_at: str = Field(description="ISO 8601, UTC: when the user finished the flow")
    checked_at: str = Field(description="ISO 8601, UTC: when CheckResult was read")
    result: ObjectPointer | None = Field(description="the full result document in S3")
    evidence: dict[Literal["video", "face", "id_front", "id_back"], ObjectPointer | None]
    video_status: VideoStatus
    evidence_lost_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form stored in Redis and posted to webhooks."""
        return self.model_dump(mode="json")


@dataclass(slots=True)
class Archived:
    """What the service archived for one transaction (plain object, inside the service)."""

    video: VideoArchive | None = None
    images: dict[Evidence, StoredObject] = field(default_factory=dict)
    video_status: VideoStatus = "absent"
    lost_reason: str | None = None


def _pointer(obj: StoredObject | None) -> dict[str, Any] | None:
    if obj is None:
        return None
    return {"key": obj.key, "sha256": obj.sha256, "size": obj.size}


_EVIDENCE_NAMES = {
    Evidence.VIDEO: "video",
    Evidence.FACE: "face",
    Evidence.ID_FRONT: "id_front",
    Evidence.ID_BACK: "id_back",
}


def evidence_pointers(archived: Archived) -> dict[str, dict[str, Any] | None]:
    """``{"video": {key, sha256, size} | None, "face": ..., "id_front": ..., "id_back": ...}``."""
    out: dict[str, dict[str, Any] | None] = {
        "video": _pointer(archived.video.stored if archived.video else None)
    }
    for name in (Evidence.FACE, Evidence.ID_FRONT, Evidence.ID_BACK):
        out[_EVIDENCE_NAMES[name]] = _pointer(archived.images.get(name))
    return out


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def build_result_document(
    job: OnboardingJob, result: CheckResultResult, archived: Archived, *, checked_at: float
) -> dict[str, Any]:
    """The full result for S3: every field the provider returned, images and links replaced."""
    wire = result.wire()
    pointers = evidence_pointers(archived)
    face = wire.get("ExtFaceInfo")
    if isinstance(face, dict):
        if "faceImg" in face:
            face["faceImg"] = pointers["face"]
        if "docVideoUrl" in face:
            # A presigned link: never stored; the archived copy replaces it.
            face["docVideoUrl"] = pointers["video"]
    ids = wire.get("ExtIdInfo")
    if isinstance(ids, dict):
        if "idImage" in ids:
            ids["idImage"] = pointers["id_front"]
        if "idBackImage" in ids:
            ids["idBackImage"] = pointers["id_back"]
    return {
        "version": RECORD_VERSION,
        "transactionId": job.transaction_id,
        "productCode": job.product_code,
        "merchantBizId": job.merchant_biz_id,
        "completedAt": _iso(job.completed_at),
        "checkedAt": _iso(checked_at),
        "result": wire,
        "evidence": pointers,
        "videoStatus": archived.video_status,
    }


def build_record(
    job: OnboardingJob,
    result: CheckResultResult,
    archived: Archived,
    result_obj: StoredObject,
    *,
    checked_at: float,
) -> ResultRecord:
    """The result record: outcome, ids and S3 pointers; never images or personal data."""
    status: Status = "evidence_lost" if archived.lost_reason is not None else "complete"
    return ResultRecord.model_validate(
        {
            "transaction_id": job.transaction_id,
            "status": status,
            "passed": result.passed,
            "sub_code": result.sub_code,
            **sub_code_fields(result.sub_code),
            "product_code": job.product_code,
            "request_id": result.request_id,
            "completed_at": _iso(job.completed_at),
            "checked_at": _iso(checked_at),
            "result": _pointer(result_obj),
            "evidence": evidence_pointers(archived),
            "video_status": archived.video_status,
            "evidence_lost_reason": archived.lost_reason,
        }
    )


def build_event(record: ResultRecord | Mapping[str, Any]) -> dict[str, object]:
    """The results-stream event of a record: flat ids, outcome and S3 keys (never links)."""
    if isinstance(record, ResultRecord):
        record = record.to_dict()
    evidence = record.get("evidence") or {}
    video = evidence.get("video") or {}
    result = record.get("result") or {}
    return {
        "type": EVENT_TYPE,
        "status": record["status"],
        "passed": record.get("passed"),
        "sub_code": record.get("sub_code"),
        "sub_code_known": record.get("sub_code_known"),
        "sub_code_category": record.get("sub_code_category"),
        "sub_code_billed": record.get("sub_code_billed"),
        "next_step": record.get("next_step"),
        "product_code": record.get("product_code"),
        "completed_at": record.get("completed_at"),
        "result_key": result.get("key"),
        "video_key": video.get("key"),
    }
