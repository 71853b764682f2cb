"""Client for Alibaba Cloud ID Verification (cloudauth-intl, API version 2022-08-09)."""

from worker.cloudauth.quotas import DEFAULT_QUOTAS

API_VERSION = "2022-08-09"

__all__ = ["API_VERSION", "DEFAULT_QUOTAS"]
