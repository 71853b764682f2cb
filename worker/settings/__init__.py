"""Runtime configuration: one frozen part per capability, each read from its ``IDV_*`` variables.

``load_settings()`` builds every part once and checks the rules between them; a service or
adapter receives only the part(s) it reads (``settings.redis``, ``settings.batch`` ...).
Invalid values fail at start with a message that names the variable (``SettingsError``).
"""

from worker.settings.base import (
    ENV_PREFIX,
    CrossFieldError,
    Part,
    SettingsError,
    env_name,
)
from worker.settings.batch import BatchSettings, SourceSettings
from worker.settings.broker import BrokerSettings
from worker.settings.callbacks import CallbackSettings
from worker.settings.ledger import LedgerSettings
from worker.settings.observability import LOG_FORMATS, LOG_LEVELS, ObservabilitySettings
from worker.settings.onboarding import EvidenceSettings, OnboardingSettings
from worker.settings.provider import ProviderSettings
from worker.settings.quotas import QuotaSettings
from worker.settings.receiver import ReceiverSettings
from worker.settings.redis import RedisSettings
from worker.settings.results import ResultSettings
from worker.settings.root import (
    MODES,
    OWNERS,
    PARTS,
    DeploymentSettings,
    Settings,
    load_settings,
)
from worker.settings.storage import S3_SSE_MODES, S3_VERIFY_SSE_MODES, StorageSettings
from worker.settings.subjects import SubjectSettings
from worker.settings.webhooks import WebhookSettings

__all__ = [
    "ENV_PREFIX",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MODES",
    "OWNERS",
    "PARTS",
    "S3_SSE_MODES",
    "S3_VERIFY_SSE_MODES",
    "BatchSettings",
    "BrokerSettings",
    "CallbackSettings",
    "CrossFieldError",
    "DeploymentSettings",
    "EvidenceSettings",
    "LedgerSettings",
    "ObservabilitySettings",
    "OnboardingSettings",
    "Part",
    "ProviderSettings",
    "QuotaSettings",
    "ReceiverSettings",
    "RedisSettings",
    "ResultSettings",
    "Settings",
    "SettingsError",
    "SourceSettings",
    "StorageSettings",
    "SubjectSettings",
    "WebhookSettings",
    "env_name",
    "load_settings",
]
