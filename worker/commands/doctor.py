"""``idv-worker doctor [--json] [--check NAME]``: check that this deployment can work.

``CHECKS`` is the list run in order; each check is a small function taking the ``Cli``
and returning a ``CheckResult`` (name, ok, detail, and the one-line fix when not ok). Add a
check by appending a function. Exit 0 when every check passes, 1 when one fails, 2 on bad
usage or an invalid configuration. ``--check`` runs only the checks whose name starts with it
(``--check s3``, ``--check redis``).

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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from worker.redisio import RedisTarget
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


# A transaction id no flow can have: the provider answers TransactionIdInvalid once the
# signature is accepted (never a billed call: CheckResult is a read).
DOCTOR_TRANSACTION_ID = "doctor0000000000000000000000000"
DOCTOR_MERCHANT_BIZ_ID = "idvdoctor"
SIGNATURE_ACCEPTED_CODES = frozenset({"TransactionIdInvalid", "InvalidParameter"})
INSPECT_TIMEOUT_S = 2.0
BEAT_PERIODS = 3
REDIS_FIX = "start Redis, or point IDV_REDIS_URL at it (IDV_BROKER_URL too, if set)"


def _unreachable(url: str, exc: Exception) -> str:
    from worker.commands.config import mask_url

    return f"Redis unreachable at {mask_url(url)} ({type(exc).__name__})"


def _fix_of_raised(exc: Exception) -> str:
    """The fix for a check that raised: the usual cause is a Redis (or broker) not answering."""
    from kombu.exceptions import OperationalError
    from redis import RedisError

    if isinstance(exc, RedisError | OperationalError | ConnectionError):
        return REDIS_FIX
    return "fix the checks above first; if they pass, run with IDV_LOG_LEVEL=DEBUG to see why"


def check_redis(runtime: Cli) -> CheckResult:
    """Redis answers PING."""
    from redis import RedisError

    from worker.redisio import connect, redis_target

    client = connect(redis_target(runtime.settings.redis), fail_fast=True, socket_timeout=3.0)
    try:
        client.ping()
        info = cast("dict[str, Any]", client.info("server"))
        version = str(info.get("redis_version", "?"))
    except RedisError as exc:
        return CheckResult(
            "redis", False, _unreachable(runtime.settings.redis.redis_url, exc), REDIS_FIX
        )
    finally:
        client.close()
    return CheckResult("redis", True, f"Redis {version} answers")


def check_redis_durability(runtime: Cli) -> CheckResult:
    """Every Redis of the deployment persists (AOF or RDB) and does not evict."""
    from redis import RedisError

    from worker.redisio import connect
    from worker.stores.durability import inspect_durability
    from worker.wiring import redis_targets

    details, problems, unreachable = [], [], []
    for target in redis_targets(runtime.settings):
        client = connect(target, fail_fast=True, socket_timeout=3.0)
        try:
            found = inspect_durability(client)
        except RedisError as exc:
            unreachable.append(_unreachable(target.url, exc))
            continue
        finally:
            client.close()
        details.append(found.describe())
        problems.extend(found.problems())
    if unreachable:
        return CheckResult("redis durability", False, "; ".join(unreachable), REDIS_FIX)
    if problems:
        return CheckResult(
            "redis durability", False, "; ".join(problems),
            "redis.conf: appendonly yes (or a save schedule) and maxmemory-policy noeviction",
        )  # fmt: skip
    return CheckResult("redis durability", True, "; ".join(details))


def check_redis_connection(runtime: Cli) -> CheckResult:
    """How every Redis client connects: TLS (and its certificate check) and authentication;
    fails where ``IDV_MODE=production`` refuses to start, or a TLS file cannot be read."""
    import os

    from worker.wiring import connection_refusal, redis_targets

    settings = runtime.settings
    redis = settings.redis
    unreadable = [
        f"{name}={path}"
        for name, path in (
            ("IDV_REDIS_TLS_CA_FILE", redis.redis_tls_ca_file),
            ("IDV_REDIS_TLS_CERT_FILE", redis.redis_tls_cert_file),
            ("IDV_REDIS_TLS_KEY_FILE", redis.redis_tls_key_file),
        )
        if path and not os.access(path, os.R_OK)
    ]
    if unreadable:
        return CheckResult(
            "redis connection", False, f"cannot read {', '.join(unreadable)}",
            "point IDV_REDIS_TLS_* at files this process can read",
        )  # fmt: skip
    lines = [_describe_connection(target) for target in redis_targets(settings)]
    refusal = connection_refusal(settings)
    if refusal is not None:
        return CheckResult(
            "redis connection", False, "; ".join(lines),
            "use rediss:// with a password (IDV_MODE=production refuses to start), or set "
            "IDV_REDIS_ALLOW_INSECURE=true",
        )  # fmt: skip
    allowed = " (IDV_REDIS_ALLOW_INSECURE=true)" if redis.redis_allow_insecure else ""
    return CheckResult("redis connection", True, "; ".join(lines) + allowed)


def _describe_connection(target: RedisTarget) -> str:
    """``host:port: TLS (verify required, CA ...), user 'idv' with a password`` (and the
    sentinels')."""
    from urllib.parse import urlsplit

    def tls(on: bool) -> str:
        if not on:
            return "no TLS"
        ca = f", CA {target.tls.ca_file}" if target.tls.ca_file else ", system CAs"
        cert = ", client certificate" if target.tls.cert_file else ""
        return f"TLS (verify {target.tls.verify}{ca}{cert})"

    user = urlsplit(target.url).username
    auth = "no authentication"
    if target.authenticated():
        auth = f"user {user!r} with a password" if user else "a password"
    line = f"{target.where()}: {tls(target.uses_tls)}, {auth}"
    if target.sentinels:
        sentinel_auth = "no authentication"
        if target.sentinel_password:
            name = target.sentinel_username
            sentinel_auth = f"user {name!r} with a password" if name else "a password"
        line += f"; sentinels: {tls(target.sentinels_use_tls)}, {sentinel_auth}"
    return line


def check_provider(runtime: Cli) -> CheckResult:
    """The provider answers a signed CheckResult for a dummy id with TransactionIdInvalid."""
    from worker.cloudauth.errors import CloudAuthError, CredentialsError
    from worker.errors import IdvError
    from worker.ratelimit import CallContext

    name, settings = "provider", runtime.settings
    provider = settings.provider
    ctx = CallContext(deadline=time.time() + provider.connect_timeout + provider.read_timeout)
    try:
        runtime.client.check_result(
            transaction_id=DOCTOR_TRANSACTION_ID,
            merchant_biz_id=DOCTOR_MERCHANT_BIZ_ID,
            product_code=settings.onboarding.onboarding_product,
            ctx=ctx,
        )
    except CredentialsError as exc:
        return CheckResult(
            name, False, f"signature refused: {exc.code}",
            "check IDV_ACCESS_KEY_ID / IDV_ACCESS_KEY_SECRET (and the machine's clock)",
        )  # fmt: skip
    except CloudAuthError as exc:
        if exc.code in SIGNATURE_ACCEPTED_CODES:
            return CheckResult(name, True, f"{settings.provider.endpoint} accepted the signature")
        return CheckResult(
            name, False, f"CheckResult answered {exc.code}",
            "check IDV_ENDPOINT, the account's permissions and IDV_ONBOARDING_PRODUCT",
        )  # fmt: skip
    except IdvError as exc:
        return CheckResult(name, False, f"not called: {exc.code}", "check the limiter's Redis")
    return CheckResult(
        name, False, "a dummy transaction id was answered as a result",
        "check that IDV_ENDPOINT is the ID Verification API (cloudauth-intl), not another service",
    )  # fmt: skip


def check_consumers(runtime: Cli) -> CheckResult:
    """Every queue has at least one live consumer."""
    from worker.queues import ALL_QUEUES

    inspect = runtime.app.control.inspect(timeout=INSPECT_TIMEOUT_S)
    replies = inspect.active_queues() or {}
    consumed = {q.get("name") for queues in replies.values() for q in queues or []}
    missing = [q for q in ALL_QUEUES if q not in consumed]
    if not replies:
        return CheckResult(
            "consumers", False, "no worker answered",
            "start workers: `celery -A worker.app worker -Q " + ",".join(ALL_QUEUES) + "`",
        )  # fmt: skip
    if missing:
        return CheckResult(
            "consumers", False,
            f"{len(replies)} worker(s); no consumer for {', '.join(missing)}",
            "start a worker with -Q " + ",".join(missing),
        )  # fmt: skip
    return CheckResult("consumers", True, f"{len(replies)} worker(s) consume every queue")


def check_beat(runtime: Cli) -> CheckResult:
    """Beat is running: the reconciler took its sweep lock recently."""
    every = runtime.settings.ledger.reconcile_every_s
    last = runtime.ledger.last_sweep("reconcile")
    window = BEAT_PERIODS * every
    fix = "run exactly one `celery -A worker.app beat`"
    if last is None:
        return CheckResult("beat", False, "the reconciler has not run (in the last day)", fix)
    age = time.time() - last
    if age > window:
        return CheckResult(
            "beat", False, f"last reconcile sweep {age:.0f}s ago (expected within {window:.0f}s)",
            fix,
        )  # fmt: skip
    return CheckResult("beat", True, f"last reconcile sweep {max(age, 0):.0f}s ago")


def check_s3_bucket(runtime: Cli) -> CheckResult:
    """The bucket exists and the credentials may see it."""
    from worker.storage import StorageError

    name, bucket = "s3 bucket", runtime.settings.storage.s3_bucket
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


def check_s3_encryption(runtime: Cli) -> CheckResult:
    """One probe object written with IDV_S3_SSE: applied and reported, accepted silently or
    refused (then deleted)."""
    from worker.storage import probe_encryption

    probe = probe_encryption(runtime.objects)
    return CheckResult(
        "s3 encryption", probe.ok, f"{probe.outcome.value}: {probe.detail}", probe.fix
    )


def check_s3_copies(runtime: Cli) -> CheckResult:
    """Warn about bucket settings that keep copies of personal data past an erasure."""
    from worker.storage import StorageError

    name = "s3 copies"
    try:
        copies = runtime.objects.bucket_copies()
    except StorageError as exc:
        return CheckResult(
            name, False, f"bucket settings not readable: {exc.operation} {exc.code}",
            "allow s3:GetBucketVersioning, GetLifecycleConfiguration, "
            "GetBucketObjectLockConfiguration and GetReplicationConfiguration",
        )  # fmt: skip
    warnings = copies.warnings()
    if warnings:
        return CheckResult(
            name, True, "; ".join(warnings),
            "add a lifecycle rule with NoncurrentVersionExpiration (`idv-worker retention "
            "--print`); erasure reports versions it cannot remove and replicas it cannot reach",
            warning=True,
        )  # fmt: skip
    versioning = copies.versioning or "off"
    return CheckResult(name, True, f"versioning {versioning}; no Object Lock, no replication")


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
                results.append(CheckResult(name, False, detail, _fix_of_raised(exc)))
    finally:
        logging.disable(logging.NOTSET)
    return [r if r.ok or r.fix else replace(r, fix=_fix_of_raised(Exception())) for r in results]


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
