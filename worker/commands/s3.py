"""``idv-worker s3 ensure-bucket``: create the bucket if it is missing (idempotent).

Exit 0 when the bucket exists afterwards, 1 when it cannot be created (the S3 code and what to
check on one line), 2 on bad usage or an invalid configuration.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _ensure_bucket(args: argparse.Namespace) -> int:
    from worker.settings import load_settings
    from worker.storage import S3ObjectStore, StorageError

    settings = load_settings()
    store = S3ObjectStore(settings.storage)
    try:
        created = store.ensure_bucket()
    except StorageError as exc:
        print(
            f"idv-worker s3 ensure-bucket: cannot create bucket {settings.storage.s3_bucket} "
            f"({exc.operation}: {exc.code}); check IDV_S3_ENDPOINT_URL and that the S3 "
            "credentials may create buckets (s3:CreateBucket)",
            file=sys.stderr,
        )
        return 1
    finally:
        store.close()
    print(f"bucket {settings.storage.s3_bucket} {'created' if created else 'exists'}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``s3`` and its subcommands."""
    parser = subparsers.add_parser("s3", help="S3 store administration (ensure-bucket)")
    commands = parser.add_subparsers(dest="s3_command", metavar="SUBCOMMAND")
    commands.required = True
    ensure = commands.add_parser(
        "ensure-bucket",
        help="create IDV_S3_BUCKET if it does not exist (idempotent)",
        description="Create IDV_S3_BUCKET if it does not exist. Exit 0 when it exists "
        "afterwards, 1 when it cannot be created, 2 on bad usage.",
    )
    ensure.set_defaults(handler=_ensure_bucket)
