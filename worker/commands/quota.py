"""``idv-worker quota status``: the limiter's buckets as Redis sees them (read-only)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import redis

from worker.cloudauth import DEFAULT_QUOTAS
from worker.commands.output import fail
from worker.ratelimit import BucketStatus, QuotaTable, limiter_redis, read_status
from worker.settings import load_settings


def register(subparsers: Any) -> None:
    """Add the ``quota`` command group."""
    parser = subparsers.add_parser("quota", help="inspect the global rate limiter")
    commands = parser.add_subparsers(dest="quota_command", metavar="SUBCOMMAND")
    commands.required = True
    status = commands.add_parser(
        "status",
        help="per bucket: configured and effective rate, waiting callers, last throttle",
        description="Read-only view of every rate-limit bucket in IDV_REDIS_URL.",
    )
    status.add_argument("--json", action="store_true", help="print one JSON document")
    status.add_argument("--product", metavar="CODE", help="only buckets of this product code")
    status.add_argument("--api", metavar="API", help="only buckets of this API")
    status.set_defaults(handler=_status)


def _where(client: redis.Redis) -> str:
    # host:port only: a URL may carry a password.
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def _status(args: argparse.Namespace) -> int:
    settings = load_settings()
    client = limiter_redis(settings.redis)
    quotas = QuotaTable(settings.quotas, DEFAULT_QUOTAS)
    try:
        rows = read_status(
            client, quotas, settings.redis.namespace, product_code=args.product, api=args.api
        )
    except redis.RedisError as exc:
        return fail(args, f"cannot read Redis at {_where(client)}: {type(exc).__name__}: {exc}")
    finally:
        client.close()
    if args.json:
        print(json.dumps({"buckets": [row.as_dict() for row in rows]}, indent=2))
    else:
        print(_table(rows))
    return 0


def _ago(row: BucketStatus) -> str:
    if row.last_throttled is None:
        return "never"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row.last_throttled))
    return f"{stamp} ({row.now - row.last_throttled:.0f}s ago)"


def _quota(row: BucketStatus) -> str:
    configured, stored = row.configured_rate, row.stored_rate
    if configured is None:
        return "?" if stored is None else f"{stored:g} (workers)"
    if stored is not None and stored != configured:
        return f"{configured:g} (workers: {stored:g})"
    return f"{configured:g}"


def _table(rows: list[BucketStatus]) -> str:
    if not rows:
        return "no rate-limit buckets in use"
    header = (
        "BUCKET",
        "QUOTA",
        "EFFECTIVE",
        "MARGIN",
        "FACTOR",
        "REALTIME",
        "ARCHIVAL",
        "BULK",
        "THROTTLED",
    )
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.bucket,
                _quota(row),
                "?" if row.effective_rate is None else f"{row.effective_rate:.2f}",
                f"{row.margin:.2%}",
                f"{row.factor:.2f}",
                str(row.waiting.get("realtime", 0)),
                str(row.waiting.get("archival", 0)),
                str(row.waiting.get("bulk", 0)),
                f"{row.throttled_total}, last {_ago(row)}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )
