"""``idv-worker erase``: remove everything kept about a transaction, a merchant user or a batch.

Prints the counts as JSON, with ``remaining``: every S3 copy it could not remove and why (Object
Lock retention or legal hold, replication); exit 1 when something remains. One audit entry
(``<ns>audit``, pseudonyms and counts only) is written per run. See ``worker.erasure`` for what
goes.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from worker.commands.output import fail
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
        print(f"idv-worker erase: {exc}", file=sys.stderr)
        return 2
    finally:
        cli.close()
    print(json.dumps(report.as_dict(), indent=2))
    if report.remaining:
        return fail(args, f"{len(report.remaining)} S3 copies remain (listed in 'remaining')")
    return 0


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
