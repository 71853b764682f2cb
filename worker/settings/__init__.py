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
from worker.settings.storage import (
    BATCHES_FOLDER,
    EVIDENCE_FOLDER,
    PROBE_FOLDER,
    RESULTS_FOLDER,
    S3_SSE_MODES,
    S3_VERIFY_SSE_MODES,
    WORKER_FOLDERS,
    StorageSettings,
    key_folder,
)
from worker.settings.subjects import SubjectSettings
from worker.settings.webhooks import WEBHOOK_SECRET_PREFIX, WebhookSettings, webhook_key

__all__ = [
    "BATCHES_FOLDER",
    "ENV_PREFIX",
    "EVIDENCE_FOLDER",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "MODES",
    "OWNERS",
    "PARTS",
    "PROBE_FOLDER",
    "RESULTS_FOLDER",
    "S3_SSE_MODES",
    "S3_VERIFY_SSE_MODES",
    "WEBHOOK_SECRET_PREFIX",
    "WORKER_FOLDERS",
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
    "key_folder",
    "load_settings",
    "webhook_key",
]
