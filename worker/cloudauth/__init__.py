"""Client for Alibaba Cloud ID Verification (cloudauth-intl, API version 2022-08-09)."""

API_VERSION = "2022-08-09"
