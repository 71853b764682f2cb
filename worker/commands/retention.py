"""``idv-worker retention --print``: the S3 lifecycle rules that enforce evidence retention.

Apply the printed JSON to the bucket, e.g.
``aws s3api put-bucket-lifecycle-configuration --bucket B --lifecycle-configuration file://x``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.commands.output import INVALID, fail
from worker.settings import load_settings
from worker.storage import lifecycle_configuration


def register(subparsers: Any) -> None:
    """Add ``retention``."""
    parser = subparsers.add_parser(
        "retention",
        help="print the S3 lifecycle rules of IDV_EVIDENCE_RETENTION_DAYS (JSON)",
    )
    parser.add_argument("--print", action="store_true", dest="print_", help="print the JSON")
    parser.add_argument(
        "--days", type=int, default=None, metavar="N", help="override the retention"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    days = args.days if args.days is not None else settings.storage.evidence_retention_days
    if days < 1:
        return fail(args, "--days must be at least 1", INVALID)
    print(json.dumps(lifecycle_configuration(settings.storage.s3_prefix, days), indent=2))
    return 0
