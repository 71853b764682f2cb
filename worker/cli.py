"""The ``idv-worker`` command: builds the parser from ``worker.commands`` modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from worker.settings import SettingsError

# Each module registers one command group; order is the order shown in --help.
COMMAND_MODULES: tuple[str, ...] = (
    "worker.commands.api",
    "worker.commands.emulator",
    "worker.commands.quota",
    "worker.commands.dlq",
    "worker.commands.receiver",
    "worker.commands.callbacks",
    "worker.commands.metrics",
    "worker.commands.config",
    "worker.commands.batch",
    "worker.commands.ledger",
    "worker.commands.s3",
    "worker.commands.doctor",
    "worker.commands.erase",
    "worker.commands.retention",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idv-worker",
        description="Drive Alibaba Cloud ID Verification (cloudauth-intl) at scale.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except SettingsError as exc:
        print(f"idv-worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
