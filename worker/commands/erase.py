"""``idv-worker erase``: remove everything kept about a transaction, a merchant user or a batch.

Prints the counts as JSON, with ``remaining``: every S3 copy it could not remove and why (Object
Lock retention or legal hold, replication); exit 1 when something remains. One audit entry
(``<ns>audit``, pseudonyms and counts only) is written per run. See ``worker.erasure`` for what
goes. An id of which nothing was found (unknown, or erased before) exits 2 with one line saying
so, after the counts (all zero).
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from worker.commands.output import INVALID, fail
from worker.keys import InvalidKeyError
from worker.settings import load_settings
from worker.wiring import Cli


def register(subparsers: Any) -> None:
    """Add ``erase``."""
    parser = subparsers.add_parser(
        "erase",
        help="erase a transaction, a merchant user's data or a batch (S3, Redis, audit entry)",
        description="Delete evidence, result documents, batch item documents, records, dead "
        "letters, stream events and leases of one subject; leaves an audit entry without "
        "personal data.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--transaction", metavar="TID", help="one onboarding transaction")
    which.add_argument(
        "--merchant-user",
        "--subject",
        dest="merchant_user",
        metavar="ID",
        help="every record of a merchant user id (the raw id; its keyed pseudonym is computed)",
    )
    which.add_argument("--batch", metavar="BATCH", help="a whole batch")
    parser.add_argument(
        "--by",
        default=None,
        metavar="NAME",
        help="who asks (recorded in the audit entry; default: OS user)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    by = args.by or _os_user()
    cli = Cli(load_settings())
    try:
        eraser = cli.eraser()
        if args.transaction is not None:
            report = eraser.erase_transaction(args.transaction, by=by)
        elif args.merchant_user is not None:
            report = eraser.erase_merchant_user(args.merchant_user, by=by)
        else:
            report = eraser.erase_batch(args.batch, by=by)
    except InvalidKeyError as exc:
        return fail(args, str(exc), INVALID)
    finally:
        cli.close()
    print(json.dumps(report.as_dict(), indent=2))
    if report.remaining:
        return fail(args, f"{len(report.remaining)} S3 copies remain (listed in 'remaining')")
    counts = report.as_dict()
    if not any(v for k, v in counts.items() if isinstance(v, int)):
        # An unknown id (or one erased before): invalid input, as for every unknown id.
        given = next(v for v in (args.transaction, args.merchant_user, args.batch) if v)
        return fail(args, f"found nothing to erase for {given} (an audit entry says so)", INVALID)
    return 0


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
