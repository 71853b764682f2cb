"""``idv-worker doctor [--json] [--check NAME]``: check that this deployment can work.

``CHECKS`` is the list run in order; each check is a small function taking the ``Cli``
and returning a ``CheckResult`` (name, ok, detail, and the one-line fix when not ok). Add a
check to the module of ``worker.commands.checks`` for what it checks and append it here. Exit 0
when every check passes, 1 when one fails, 2 on bad usage or an invalid configuration.
``--check`` runs only the checks whose name starts with it (``--check s3``, ``--check redis``).

The checks: Redis reachable; how every Redis client connects (TLS, authentication: what
``IDV_MODE=production`` refuses); Redis keeps what is written (AOF or RDB, ``noeviction``); the
provider accepts our signature (a ``CheckResult`` for a transaction id that cannot exist must
come back ``TransactionIdInvalid`` or ``InvalidParameter``: a read, never billed); every queue
has a consumer (``celery inspect``, short timeout); beat is running (the reconciler's sweep
took its lock within 3 x ``IDV_RECONCILE_EVERY_S``); the S3 bucket and its encryption; the
bucket's copies erasure cannot reach (a warning, not a failure: versioning without a lifecycle
rule for noncurrent versions, Object Lock, replication).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from worker.commands.checks.bucket import check_s3_bucket, check_s3_copies, check_s3_encryption
from worker.commands.checks.redis_server import (
    check_redis,
    check_redis_connection,
    check_redis_durability,
)
from worker.commands.checks.result import Check, CheckResult, fix_of_raised
from worker.commands.checks.services import check_beat, check_consumers, check_provider

if TYPE_CHECKING:
    from worker.wiring import Cli

__all__ = [
    "CHECKS",
    "Check",
    "CheckResult",
    "check_beat",
    "check_consumers",
    "check_name",
    "check_provider",
    "check_redis",
    "check_redis_connection",
    "check_redis_durability",
    "check_s3_bucket",
    "check_s3_copies",
    "check_s3_encryption",
    "register",
    "run_checks",
    "select",
]


# The checks, in the order they run.
CHECKS: list[Check] = [
    check_redis,
    check_redis_connection,
    check_redis_durability,
    check_provider,
    check_consumers,
    check_beat,
    check_s3_bucket,
    check_s3_encryption,
    check_s3_copies,
]


def check_name(check: Check) -> str:
    """``check_redis_durability`` -> ``redis durability``."""
    return check.__name__.removeprefix("check_").replace("_", " ")


def select(prefixes: list[str] | None) -> list[Check]:
    """The checks whose name starts with one of ``prefixes`` (all without prefixes)."""
    if not prefixes:
        return list(CHECKS)
    return [c for c in CHECKS if any(check_name(c).startswith(p.strip()) for p in prefixes)]


def run_checks(runtime: Cli, checks: list[Check] | None = None) -> list[CheckResult]:
    """Run every check; a check that raises is a failed check, not a crash. Every failed
    check carries a fix; the checks' own log lines are held back (the table says it all)."""
    results = []
    logging.disable(logging.CRITICAL)
    try:
        for check in checks if checks is not None else CHECKS:
            try:
                results.append(check(runtime))
            except Exception as exc:  # a broken check must not hide the others
                name = check_name(check)
                detail = f"check raised {type(exc).__name__}"
                results.append(CheckResult(name, False, detail, fix_of_raised(exc)))
    finally:
        logging.disable(logging.NOTSET)
    return [r if r.ok or r.fix else replace(r, fix=fix_of_raised(Exception())) for r in results]


def _print(results: list[CheckResult]) -> None:
    width = max(len(r.name) for r in results)
    for result in results:
        mark = ("warn" if result.warning else "ok  ") if result.ok else "FAIL"
        print(f"{mark}  {result.name:<{width}}  {result.detail}")
        if (result.warning or not result.ok) and result.fix:
            print(f"      {'':<{width}}  fix: {result.fix}")


def _handle(args: argparse.Namespace) -> int:
    from worker.settings import load_settings
    from worker.wiring import Cli

    checks = select(args.check)
    if not checks:
        print(f"idv-worker doctor: no check named {', '.join(args.check)}", file=sys.stderr)
        return 2
    runtime = Cli(load_settings())
    try:
        results = run_checks(runtime, checks)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        _print(results)
    return 0 if all(r.ok for r in results) else 1


def register(subparsers: Any) -> None:
    """Add ``doctor``."""
    parser = subparsers.add_parser(
        "doctor",
        help="check the deployment (Redis, provider, consumers, beat, S3); exit 1 if one fails",
        description="Run every check and print one line each, with the fix for a failed one. "
        "Exit 0 when all pass, 1 when one fails, 2 on bad usage or configuration.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--check",
        action="append",
        metavar="NAME",
        help="run only the checks whose name starts with NAME (repeatable): redis, provider, "
        "consumers, beat, s3",
    )
    parser.set_defaults(handler=_handle)
