"""What a doctor check returns, and what the checks share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.wiring import Cli


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check; ``fix`` says what to change when ``ok`` is False."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok, but something an operator should change (printed ``warn``)


Check = Callable[["Cli"], CheckResult]

REDIS_FIX = "start Redis, or point IDV_REDIS_URL at it (IDV_BROKER_URL too, if set)"


def describe_unreachable(url: str, exc: Exception) -> str:
    from worker.commands.config import mask_url

    return f"Redis unreachable at {mask_url(url)} ({type(exc).__name__})"


def fix_of_raised(exc: Exception) -> str:
    """The fix for a check that raised: the usual cause is a Redis (or broker) not answering."""
    from kombu.exceptions import OperationalError
    from redis import RedisError

    if isinstance(exc, RedisError | OperationalError | ConnectionError):
        return REDIS_FIX
    return "fix the checks above first; if they pass, run with IDV_LOG_LEVEL=DEBUG to see why"
