"""idv-worker: drive Alibaba Cloud ID Verification (cloudauth-intl) at scale."""

__version__ = "0.1.0"
