"""``idv-worker dev up``: the whole local stack in the foreground, until Ctrl-C.

Redis (AOF), an S3 API (moto's server) with the bucket created, the provider emulator, the
callback receiver, one Celery worker per lane with task events on (``-E``, for Flower) and
``celery beat``, on free loopback ports (``worker.devtools.DevStack.up``). It prints the
``export IDV_...=`` lines that point another shell at it (``--json``: one JSON object of
endpoints and that environment, once everything answers). SIGINT or SIGTERM stops every
process, one line each on stderr; a process that exits on its own stops the stack (exit 1).
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from worker.commands.output import FAILURE, OK, fail

POLL_S = 0.5  # how often the foreground loop looks for a process that exited


def register(subparsers: Any) -> None:
    """Add ``dev up``."""
    parser = subparsers.add_parser("dev", help="developer tools: the local stack (dev up)")
    commands = parser.add_subparsers(dest="dev_command", metavar="SUBCOMMAND", required=True)
    up = commands.add_parser(
        "up",
        help="run Redis, an S3 API, the emulator, the receiver, workers and beat until Ctrl-C",
        description="Start the local stack on free loopback ports and print the IDV_ "
        "variables to use it from another shell. Ctrl-C (or SIGTERM) stops everything.",
    )
    up.add_argument(
        "--dir",
        type=Path,
        metavar="PATH",
        help="keep Redis data (AOF), logs and beat state here across restarts "
        "(default: a temporary folder, removed on exit)",
    )
    up.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (endpoints, env) once everything answers",
    )
    up.set_defaults(handler=_up)


class _Stop(BaseException):
    """SIGINT or SIGTERM arrived: stop the stack."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _up(args: argparse.Namespace) -> int:
    from worker.devtools.devstack import DevStack  # only this command needs the dev tools

    temporary = args.dir is None
    workdir = Path(tempfile.mkdtemp(prefix="idv-dev-")) if temporary else args.dir.resolve()
    handlers = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    stack = DevStack(workdir)
    code = OK
    try:
        env = stack.up({"IDV_CALLBACK_TOKENS": secrets.token_urlsafe(16)}, _progress)
        _announce(args, stack.endpoints(), env, workdir)
        while (gone := stack.exited()) is None:
            time.sleep(POLL_S)
        status = gone.proc.returncode if gone.proc else None
        code = fail(args, f"{gone.name} exited (code {status}); see {workdir / gone.name}.log")
    except _Stop as stop:
        print(f"{stop}: stopping the stack", file=sys.stderr)
    except (RuntimeError, TimeoutError, OSError) as exc:
        code = fail(args, f"cannot start the stack (logs in {workdir}): {exc}", FAILURE)
    finally:
        for sig in handlers:  # a second Ctrl-C must not leave processes behind
            signal.signal(sig, signal.SIG_IGN)
        stack.close(lambda proc: print(f"stopped {proc.name}", file=sys.stderr))
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if temporary and code == OK:  # after a failure its logs are worth reading
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def _progress(name: str, detail: str) -> None:
    print(f"{name:<9} {detail}", file=sys.stderr, flush=True)


def _announce(
    args: argparse.Namespace, endpoints: dict[str, str], env: dict[str, str], workdir: Path
) -> None:
    if args.json:
        doc = {**endpoints, "env": env, "dir": str(workdir)}
        print(json.dumps(doc, sort_keys=True), flush=True)
        return
    lines = [
        f"# the local stack is up (data and logs: {workdir}); Ctrl-C stops it.",
        "# In another shell:",
        *(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())),
        f"# receiver {endpoints['receiver_url']}, metrics {endpoints['metrics_url']}",
    ]
    print("\n".join(lines), flush=True)
