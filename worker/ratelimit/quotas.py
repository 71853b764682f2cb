"""What the limiter hands out: QPS per bucket (the provider's published quotas joined with
``IDV_QUOTAS``/``IDV_API_QUOTAS``) and how much of it (margins, burst, longest wait)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from worker.errors import ConfigurationError
from worker.settings import QuotaSettings


class UnknownProduct(ConfigurationError):
    """No quota is configured for a product code."""

    def __init__(self, product_code: str) -> None:
        self.product_code = product_code
        super().__init__(f"no quota configured for product {product_code!r}: set IDV_QUOTAS")


@dataclass(frozen=True)
class QuotaTable:
    """The limiter's settings part with the published quotas it overrides.

    ``QuotaTable(settings, published)``: ``published`` is the provider's table
    (``worker.cloudauth.DEFAULT_QUOTAS`` in production, passed in by the builder).
    """

    settings: QuotaSettings = field(default_factory=QuotaSettings)
    published: Mapping[str, float] = field(default_factory=dict)

    def knows(self, product_code: str) -> bool:
        """Whether ``product_code`` has a quota."""
        return product_code in self.settings.quotas or product_code in self.published

    def quota_for(self, product_code: str, api: str) -> float:
        """QPS allowed for one API of a product (per-API override, else product quota)."""
        override = self.settings.api_quotas.get(f"{product_code}:{api}")
        if override is not None:
            return override
        found = self.settings.quotas.get(product_code, self.published.get(product_code))
        if found is None:
            raise UnknownProduct(product_code)
        return found
