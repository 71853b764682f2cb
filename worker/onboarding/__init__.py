"""The onboarding flow: callback intake, the job message, and the service that fetches,
archives and writes back the result of one transaction.
"""

from __future__ import annotations

from worker.onboarding.callbacks import (
    CallbackEvent,
    CallbackIntake,
    CallbackRejected,
    Params,
    Submission,
    TokenChecker,
    flatten_params,
    parse_callback,
)
from worker.onboarding.results import (
    EVENT_TYPE,
    RECORD_VERSION,
    Archived,
    ObjectPointer,
    ResultRecord,
    Status,
    VideoStatus,
    build_event,
    build_record,
    build_result_document,
    evidence_pointers,
)
from worker.onboarding.service import (
    LeaseLost,
    OnboardingService,
    Outcome,
)
from worker.onboarding.tokens import derive_callback_token, matches_derived

__all__ = [
    "EVENT_TYPE",
    "RECORD_VERSION",
    "Archived",
    "CallbackEvent",
    "CallbackIntake",
    "CallbackRejected",
    "LeaseLost",
    "ObjectPointer",
    "OnboardingService",
    "Outcome",
    "Params",
    "ResultRecord",
    "Status",
    "Submission",
    "TokenChecker",
    "VideoStatus",
    "build_event",
    "build_record",
    "build_result_document",
    "derive_callback_token",
    "evidence_pointers",
    "flatten_params",
    "matches_derived",
    "parse_callback",
]
