"""``idv-worker doctor [--json]``: check that this deployment can work, one line per check.

``CHECKS`` is the list run in order; each check is a small function taking the ``Runtime``
and returning a ``CheckResult`` (name, ok, detail, and the one-line fix when not ok). Add a
check by appending a function. Exit 0 when every check passes, 1 when one fails, 2 on bad
usage or an invalid configuration.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.runtime import Runtime


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check; ``fix`` says what to change when ``ok`` is False."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


Check = Callable[["Runtime"], CheckResult]


def check_s3_bucket(runtime: Runtime) -> CheckResult:
    """The bucket exists and the credentials may see it."""
    from worker.storage import StorageError

    name, bucket = "s3 bucket", runtime.settings.s3_bucket
    try:
        exists = runtime.objects.bucket_exists()
    except StorageError as exc:
        return CheckResult(
            name, False, f"HeadBucket {bucket}: {exc.code}",
            "check IDV_S3_ENDPOINT_URL, IDV_S3_ACCESS_KEY_ID / IDV_S3_SECRET_ACCESS_KEY and "
            "the bucket policy",
        )  # fmt: skip
    if not exists:
        return CheckResult(
            name, False, f"bucket {bucket} does not exist",
            "run `idv-worker s3 ensure-bucket` (or set IDV_S3_BUCKET)",
        )  # fmt: skip
    return CheckResult(name, True, f"bucket {bucket} exists")


def check_s3_encryption(runtime: Runtime) -> CheckResult:
    """One probe object written with IDV_S3_SSE: applied and reported, accepted silently or
    refused (then deleted)."""
    from worker.storage import probe_encryption

    probe = probe_encryption(runtime.objects)
    return CheckResult(
        "s3 encryption", probe.ok, f"{probe.outcome.value}: {probe.detail}", probe.fix
    )


# The checks, in the order they run; other areas append theirs (Redis, provider, queues).
CHECKS: list[Check] = [check_s3_bucket, check_s3_encryption]


def run_checks(runtime: Runtime, checks: list[Check] | None = None) -> list[CheckResult]:
    """Run every check; a check that raises is a failed check, not a crash."""
    results = []
    for check in checks if checks is not None else CHECKS:
        try:
            results.append(check(runtime))
        except Exception as exc:  # a broken check must not hide the others
            name = check.__name__.removeprefix("check_").replace("_", " ")
            results.append(CheckResult(name, False, f"check raised {type(exc).__name__}"))
    return results


def _print(results: list[CheckResult]) -> None:
    width = max(len(r.name) for r in results)
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        print(f"{mark}  {result.name:<{width}}  {result.detail}")
        if not result.ok and result.fix:
            print(f"      {'':<{width}}  fix: {result.fix}")


def _handle(args: argparse.Namespace) -> int:
    from worker.runtime import Runtime
    from worker.settings import load_settings

    runtime = Runtime(load_settings())
    try:
        results = run_checks(runtime)
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
        help="check the deployment (S3 bucket and encryption, ...); exit 1 if a check fails",
        description="Run every check and print one line each, with the fix for a failed one. "
        "Exit 0 when all pass, 1 when one fails, 2 on bad usage or configuration.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=_handle)
