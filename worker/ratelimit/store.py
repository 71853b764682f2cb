"""Where the rate limiter keeps its state: key names (the Lua scripts that change them
are ``lua/*.lua``, loaded by ``worker.redisio.lua_script``).

One bucket per (namespace, product code, API). Its keys share the hash tag
``{quota:PRODUCT:Api}`` so one script can touch them all on Redis Cluster (DESIGN §6)::

    idv:{quota:ID_OCR_MIN:DocOcrV2}:state    hash: schedule (tat), adaptive factor, config
    idv:{quota:ID_OCR_MIN:DocOcrV2}:waiters  zset: waiting callers by (deadline, arrival)
    idv:{quota:ID_OCR_MIN:DocOcrV2}:expiry   zset: when each silent waiter is dropped

Every key gets a TTL on each write (``STATE_TTL_MS``); an idle bucket simply disappears.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# After an hour without calls a bucket's state says nothing a fresh one would not.
STATE_TTL_MS = 3_600_000

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_STATE_KEY = re.compile(r"^(?P<ns>.*)\{quota:(?P<product>[^:{}]+):(?P<api>[^:{}]+)\}:state$")


@dataclass(frozen=True, slots=True)
class BucketKeys:
    """The Redis keys of one bucket (all in one hash slot)."""

    product_code: str
    api: str
    state: str
    waiters: str
    expiry: str

    @property
    def bucket(self) -> str:
        """The bucket's name in messages and metric labels: ``PRODUCT:Api``."""
        return f"{self.product_code}:{self.api}"

    def all(self) -> list[str]:
        """KEYS for the scripts, in the order they expect."""
        return [self.state, self.waiters, self.expiry]


def bucket_keys(namespace: str, product_code: str, api: str) -> BucketKeys:
    """Build the keys of one bucket; names must be plain identifiers (no braces, colons)."""
    for what, value in (("product code", product_code), ("API", api)):
        if not _NAME.match(value):
            raise ValueError(f"invalid {what} for a rate-limit bucket: {value!r}")
    prefix = f"{namespace}{{quota:{product_code}:{api}}}"
    return BucketKeys(
        product_code=product_code,
        api=api,
        state=f"{prefix}:state",
        waiters=f"{prefix}:waiters",
        expiry=f"{prefix}:expiry",
    )


def parse_state_key(namespace: str, key: str) -> BucketKeys | None:
    """The bucket a ``...:state`` key belongs to, or None if it is not one of ours."""
    found = _STATE_KEY.match(key)
    if found is None or found["ns"] != namespace:
        return None
    return bucket_keys(namespace, found["product"], found["api"])


def state_key_pattern(namespace: str) -> str:
    """A SCAN pattern matching every bucket's state key in ``namespace``."""
    escaped = re.sub(r"([*?\[\]\\])", r"\\\1", namespace)
    return escaped + "{quota:*}:state"
