"""The onboarding flow: callback intake, the job message, the service that fetches, archives
and writes back.
"""

from __future__ import annotations

from worker.onboarding.callbacks import (
    MAX_TRANSACTION_ID,
    CallbackEvent,
    CallbackIntake,
    CallbackRejected,
    Params,
    Submission,
    TokenChecker,
    flatten_params,
    parse_callback,
)
from worker.onboarding.job import (
    KIND_EVIDENCE,
    KIND_ONBOARDING,
    OnboardingJob,
    OnboardingMessage,
    default_merchant_biz_id,
)
from worker.onboarding.results import (
    EVENT_TYPE,
    RECORD_VERSION,
    Archived,
    Status,
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

__all__ = [
    "EVENT_TYPE",
    "KIND_EVIDENCE",
    "KIND_ONBOARDING",
    "MAX_TRANSACTION_ID",
    "RECORD_VERSION",
    "Archived",
    "CallbackEvent",
    "CallbackIntake",
    "CallbackRejected",
    "LeaseLost",
    "OnboardingJob",
    "OnboardingMessage",
    "OnboardingService",
    "Outcome",
    "Params",
    "Status",
    "Submission",
    "TokenChecker",
    "build_event",
    "build_record",
    "build_result_document",
    "default_merchant_biz_id",
    "evidence_pointers",
    "flatten_params",
    "parse_callback",
]
