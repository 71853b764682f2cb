"""What every command prints on failure: one line on stderr, and the exit code.

Exit codes: 0 success, 1 a failure of the provider or the system (Redis, S3), 2 invalid input
or configuration. The line starts with the command as typed: ``idv-worker <group> <command>:``
(the group's sub-command is the ``<group>_command`` attribute its parser sets).
"""

from __future__ import annotations

import argparse
import os
import sys

OK = 0
FAILURE = 1
INVALID = 2


def command_name(args: argparse.Namespace) -> str:
    """``idv-worker batch export``, ``idv-worker doctor``, or ``idv-worker`` when unknown."""
    group = getattr(args, "command", None)
    if not group:
        return "idv-worker"
    sub = getattr(args, f"{group}_command", None)
    return f"idv-worker {group}" + (f" {sub}" if sub else "")


def fail(args: argparse.Namespace, message: str, code: int = FAILURE) -> int:
    """Print ``<command>: <message>`` on stderr and return ``code``."""
    print(f"{command_name(args)}: {message}", file=sys.stderr)
    return code


def error_line(exc: BaseException) -> str:
    """An ``IdvError`` as one line: its code once (``SignatureDoesNotMatch: ...``), then text."""
    code = str(getattr(exc, "code", "") or "")
    text = str(exc)
    return text if not code or code in text else f"{code}: {text}"


def redis_unreachable(args: argparse.Namespace, exc: BaseException, url: str | None = None) -> int:
    """The one report of a Redis that cannot be used: its address (password masked), exit 1.

    ``url`` defaults to ``IDV_REDIS_URL``; when that is not set, the line says the default
    address was used (a second shell without the exports ``idv-worker dev up`` printed).
    """
    from worker.commands.config import mask_url
    from worker.settings import ENV_PREFIX, RedisSettings

    configured = os.environ.get(f"{ENV_PREFIX}REDIS_URL")
    default = str(RedisSettings.model_fields["redis_url"].default)
    where = mask_url(url or configured or default)
    message = f"Redis unreachable at {where} ({type(exc).__name__})"
    if not configured and (url is None or url == default):
        message += "; IDV_REDIS_URL is not set: set it (or apply the exports of `dev up`)"
    return fail(args, message)
