"""The ``idv-worker`` command: builds the parser from ``worker.commands`` modules.

Conventions every command group follows (``tests/unit/test_cli_conventions.py`` checks them):
connection settings come from the ``IDV_*`` environment only, never from flags; metavars are
upper-case; read commands (status, list, show, ...) take ``--json``; a failure is one line on
stderr, ``idv-worker <group> <command>: message`` (``worker.commands.output.fail``); exit codes
0 ok, 1 failure, 2 invalid input or configuration.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

import redis

from worker import __version__
from worker.commands.output import FAILURE, INVALID, error_line, fail, redis_unreachable
from worker.errors import IdvError, InvalidInput
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
    "worker.commands.dev",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idv-worker",
        description="Drive Alibaba Cloud ID Verification (cloudauth-intl) at scale.",
    )
    parser.add_argument("--version", action="version", version=f"idv-worker {__version__}")
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
    # Failures a command did not report itself end the same way everywhere.
    try:
        return handler(args)
    except (SettingsError, InvalidInput) as exc:
        return fail(args, str(exc), INVALID)
    except redis.RedisError as exc:
        return redis_unreachable(args, exc)
    except IdvError as exc:
        return fail(args, error_line(exc), FAILURE)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILURE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
