"""Command line of the emulator: ``idv-worker emulator [...]`` and ``python -m worker.emulator``.

``emulator`` serves; ``emulator samples`` writes synthetic ID images and their manifest.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from worker.emulator.config import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_PORT,
    ConfigError,
    EmulatorConfig,
    Faults,
    parse_access_key,
    parse_assignment,
    parse_quotas,
)
from worker.emulator.quotas import ALGORITHMS, check_algorithm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The serve flags, and the ``samples`` sub-command."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--access-key",
        action="append",
        metavar="AK:SECRET",
        help=f"accepted key pair, repeatable (default {':'.join(DEFAULT_ACCESS_KEY)})",
    )
    parser.add_argument(
        "--quota",
        action="append",
        metavar="PRODUCT=QPS",
        help="QPS of a product (or PRODUCT:Api=QPS), repeatable; defaults per spec §7",
    )
    parser.add_argument(
        "--quota-algorithm",
        choices=ALGORITHMS,
        default="sliding",
        metavar="NAME",
        help="how quotas are counted: %(choices)s (default: every sliding 1-second window)",
    )
    parser.add_argument(
        "--quota-burst",
        type=float,
        default=None,
        metavar="N",
        help="token-bucket capacity in calls (default: the quota itself)",
    )
    parser.add_argument("--link-validity", type=float, default=15 * 60, metavar="S")
    parser.add_argument("--fresh-link-window", type=float, default=30 * 60, metavar="S")
    parser.add_argument("--retention", type=float, default=30 * 24 * 3600, metavar="S")
    parser.add_argument("--callback-retries", type=int, default=2)
    parser.add_argument("--callback-retry-interval", type=float, default=1.0, metavar="S")
    parser.add_argument("--image-fetch-timeout", type=float, default=5.0, metavar="S")
    parser.add_argument(
        "--fault", action="append", metavar="NAME=VALUE", help="initial fault, repeatable"
    )
    parser.add_argument("--log-level", default="warning")
    parser.set_defaults(handler=serve_command)
    sub = parser.add_subparsers(dest="emulator_command", metavar="SUBCOMMAND")
    samples = sub.add_parser("samples", help="write synthetic ID images and a manifest")
    samples.add_argument("--count", type=int, required=True, metavar="N")
    samples.add_argument("--out", required=True, metavar="DIR")
    samples.add_argument("--doc-type", default=None, metavar="CODE")
    samples.add_argument("--bad", type=int, default=0, metavar="K")
    samples.add_argument("--seed", type=int, default=0)
    samples.set_defaults(handler=samples_command)


def register(subparsers: Any) -> None:
    """Add ``emulator`` to the ``idv-worker`` command."""
    parser = subparsers.add_parser(
        "emulator",
        help="run the local provider emulator (or: emulator samples)",
        description="A local stand-in for Alibaba Cloud ID Verification (cloudauth-intl).",
    )
    add_arguments(parser)


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    """``EmulatorConfig`` from parsed flags (``ConfigError`` on bad values)."""
    config = EmulatorConfig(
        host=args.host,
        port=args.port,
        link_validity=args.link_validity,
        fresh_link_window=args.fresh_link_window,
        retention=args.retention,
        callback_retries=args.callback_retries,
        callback_retry_interval=args.callback_retry_interval,
        image_fetch_timeout=args.image_fetch_timeout,
        quota_algorithm=args.quota_algorithm,
        quota_burst=args.quota_burst,
    )
    check_algorithm(config.quota_algorithm, config.quota_burst)
    if args.access_key:
        config.access_keys = dict(parse_access_key(k) for k in args.access_key)
    if args.quota:
        config.quotas.update(parse_quotas(dict(parse_assignment(q, "quota") for q in args.quota)))
    faults = Faults()
    if args.fault:
        faults.update(dict(parse_assignment(f, "fault") for f in args.fault))
    config.faults = faults
    return config


def serve_command(args: argparse.Namespace) -> int:
    from worker.emulator.server import run

    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"idv-worker emulator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    return run(config, args.log_level.lower())


def samples_command(args: argparse.Namespace) -> int:
    from worker.emulator.samples import generate_samples

    began = time.perf_counter()
    try:
        rows = generate_samples(
            args.out, args.count, doc_type=args.doc_type, bad=args.bad, seed=args.seed
        )
    except ValueError as exc:
        print(f"idv-worker emulator samples: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - began
    print(
        f"wrote {len(rows)} images and manifest.jsonl/manifest.csv to {args.out} in {elapsed:.1f}s"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m worker.emulator``: same flags as ``idv-worker emulator``."""
    parser = argparse.ArgumentParser(prog="python -m worker.emulator")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        return 130
