"""Per-flow callback tokens: a token good for one flow only.

A static ``IDV_CALLBACK_TOKENS`` value opens the callback endpoint for every transaction: if it
leaks (a log, a browser's history) anyone can trigger work for any transaction id. A derived
token binds the callback to the flow's own ``MerchantBizId``::

    token = hex(HMAC-SHA256(IDV_CALLBACK_TOKEN_SECRET, "idv-callback-token\\0" + MerchantBizId))

At ``Initialize`` (``flows start``) pass ``CallbackToken=derive_callback_token(secret, biz)`` and
a ``CallbackUrl`` whose query carries ``merchantBizId=<biz>``; the intake accepts a callback
whose ``callbackToken`` equals one of the static tokens *or* the HMAC of its ``merchantBizId``.
"""

from __future__ import annotations

import hashlib
import hmac

_LABEL = b"idv-callback-token\0"


def derive_callback_token(secret: str, merchant_biz_id: str) -> str:
    """The callback token of one flow (64 hex characters)."""
    if not secret:
        raise ValueError("the callback token secret is empty")
    if not merchant_biz_id:
        raise ValueError("merchant_biz_id is empty")
    mac = hmac.new(secret.encode(), _LABEL + merchant_biz_id.encode(), hashlib.sha256)
    return mac.hexdigest()


def matches_derived(secret: str | None, merchant_biz_id: str | None, presented: str | None) -> bool:
    """Whether ``presented`` is the derived token of ``merchant_biz_id`` (constant time)."""
    if not secret or not merchant_biz_id or not presented:
        return False
    expected = derive_callback_token(secret, merchant_biz_id).encode()
    return hmac.compare_digest(expected, presented.encode())
