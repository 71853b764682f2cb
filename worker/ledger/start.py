"""Starting a flow through us: ``Initialize``, then the transaction goes into the ledger.

The merchant user id never leaves in the clear: ``Initialize`` receives its keyed pseudonym as
``MerchantUserId`` (the provider advises hashed ids), and the merchant-user index records the
flow under the same pseudonym, so ``erase --merchant-user`` finds it. The ledger then knows the
flow's product code and ``MerchantBizId`` (so its ``CheckResult`` uses the right quota bucket,
whatever an unsigned callback claims), polls it if no callback comes, and archives it before
the provider deletes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

from worker.ledger.store import Ledger


class SubjectIndex(Protocol):
    """The merchant-user index (``worker.stores.SubjectIndex``)."""

    def pseudonym(self, merchant_user_id: str) -> str: ...

    def add(self, merchant_user_ids: Iterable[str], kind: str, ref: str) -> int: ...


class InitializeApi(Protocol):
    """The provider call that starts a flow (``CloudAuthClient.initialize``)."""

    def initialize(
        self,
        *,
        product_code: str,
        merchant_biz_id: str,
        merchant_user_id: str,
        meta_info: str | None = None,
        doc_type: str | None = None,
        callback_url: str | None = None,
        callback_token: str | None = None,
        return_url: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class StartedFlow:
    """What the user's app needs to run the flow, and the ids the ledger keeps."""

    transaction_id: str
    transaction_url: str | None
    product_code: str
    merchant_biz_id: str
    callback_url: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "transaction_id": self.transaction_id,
            "transaction_url": self.transaction_url,
            "product_code": self.product_code,
            "merchant_biz_id": self.merchant_biz_id,
            "callback_url": self.callback_url,
        }


def callback_url_for(base: str, product_code: str, merchant_biz_id: str) -> str:
    """``base`` with ``productCode`` and ``merchantBizId`` added to its query."""
    parts = urlsplit(base)
    extra = urlencode({"productCode": product_code, "merchantBizId": merchant_biz_id})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class FlowStarter:
    """``start``: ``Initialize`` and record the transaction (dependencies passed in).

    ``token_for`` gives the ``CallbackToken`` of a flow from its ``MerchantBizId`` (a static
    token, or one derived for this flow only).
    """

    def __init__(
        self,
        client: InitializeApi,
        ledger: Ledger,
        *,
        callback_url: str | None,
        token_for: Callable[[str], str | None],
        subjects: SubjectIndex,
    ) -> None:
        self.client = client
        self.ledger = ledger
        self.callback_url = callback_url
        self.token_for = token_for
        self.subjects = subjects

    def start(
        self,
        *,
        product_code: str,
        merchant_user_id: str,
        merchant_biz_id: str | None = None,
        meta_info: str | None = None,
        doc_type: str | None = None,
        return_url: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> StartedFlow:
        """Start one flow; the ledger records it as soon as ``Initialize`` answers.

        ``merchant_user_id`` is the caller's own id; only its pseudonym is sent and kept.
        """
        pseudonym = self.subjects.pseudonym(merchant_user_id)
        biz = merchant_biz_id or uuid.uuid4().hex
        callback = (
            callback_url_for(self.callback_url, product_code, biz) if self.callback_url else None
        )
        result = self.client.initialize(
            product_code=product_code,
            merchant_biz_id=biz,
            merchant_user_id=pseudonym,
            meta_info=meta_info,
            doc_type=doc_type,
            callback_url=callback,
            callback_token=self.token_for(biz) if callback else None,
            return_url=return_url,
            extra=extra,
        )
        tid = str(result.transaction_id or "")
        self.ledger.record_start(tid, product_code, biz)
        # ``idv-worker erase --merchant-user`` finds the flow's data through this index.
        self.subjects.add([pseudonym], "tx", tid)
        return StartedFlow(tid, result.transaction_url, product_code, biz, callback)
