"""Doctor checks of the parts that must be running: the provider accepts our signature,
every queue has a consumer, beat runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from worker.commands.checks.result import CheckResult

if TYPE_CHECKING:
    from worker.wiring import Cli

# A transaction id no flow can have: the provider answers TransactionIdInvalid once the
# signature is accepted (never a billed call: CheckResult is a read).
DOCTOR_TRANSACTION_ID = "doctor0000000000000000000000000"
DOCTOR_MERCHANT_BIZ_ID = "idvdoctor"
SIGNATURE_ACCEPTED_CODES = frozenset({"TransactionIdInvalid", "InvalidParameter"})
INSPECT_TIMEOUT_S = 2.0
BEAT_PERIODS = 3


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
