"""``idv-worker dev up``: the whole local stack in the foreground, until Ctrl-C.

Redis (AOF), an S3 API (moto's server) with the bucket created, the provider emulator, the
callback receiver, one Celery worker per lane with task events on (``-E``, for Flower) and
``celery beat``, on free loopback ports (``worker.devtools.DevStack.up``). Once everything
answers and beat's first reconcile has run (so ``idv-worker doctor`` passes at once), it prints
the ``export`` lines that point a second shell at it, ``PATH`` included (also written to
``env.sh`` in its folder); ``--json`` prints one JSON object of endpoints and that environment.

SIGINT, SIGTERM or SIGHUP (the terminal closed) stops every process, one line each on stderr;
a closed or broken stdout/stderr (``| tee`` killed by the same Ctrl-C) does not interrupt the
stopping. If this process dies without stopping them (SIGKILL), its children get SIGTERM
from Linux and a reaper stops their process groups (``worker.devtools.reaper``). A process
that exits on its own stops the stack (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from worker.commands.output import FAILURE, OK, command_name

POLL_S = 0.5  # how often the foreground loop looks for a process that exited
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def register(subparsers: Any) -> None:
    """Add ``dev up``."""
    parser = subparsers.add_parser("dev", help="developer tools: the local stack (dev up)")
    commands = parser.add_subparsers(dest="dev_command", metavar="SUBCOMMAND", required=True)
    up = commands.add_parser(
        "up",
        help="run Redis, an S3 API, the emulator, the receiver, workers and beat until Ctrl-C",
        description="Start the local stack on free loopback ports and print the IDV_ "
        "variables to use it from another shell. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) "
        "stops everything.",
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
    """SIGINT, SIGTERM or SIGHUP arrived: stop the stack."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def _up(args: argparse.Namespace) -> int:
    from worker.devtools.devstack import DevStack  # only this command needs the dev tools

    temporary = args.dir is None
    workdir = Path(tempfile.mkdtemp(prefix="idv-dev-")) if temporary else args.dir.resolve()
    handlers = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    stack = DevStack(workdir)
    code = OK
    try:
        env = stack.up({"IDV_CALLBACK_TOKENS": secrets.token_urlsafe(16)}, _progress)
        _announce(args, stack.endpoints(), env, workdir)
        while (gone := stack.exited()) is None:
            time.sleep(POLL_S)
        status = gone.proc.returncode if gone.proc else None
        code = _fail(args, f"{gone.name} exited (code {status}); see {workdir / gone.name}.log")
    except _Stop as stop:
        _say(f"{stop}: stopping the stack")
    except (RuntimeError, TimeoutError, OSError) as exc:
        code = _fail(args, f"cannot start the stack (logs in {workdir}): {exc}")
    finally:
        for sig in handlers:  # a second Ctrl-C must not leave processes behind
            signal.signal(sig, signal.SIG_IGN)
        stack.close(lambda proc: _say(f"stopped {proc.name}"))
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if temporary and code == OK:  # after a failure its logs are worth reading
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def _say(text: str, stream: IO[str] | None = None) -> None:
    """Print a line; a reader that went away (``| tee`` killed, terminal closed) is ignored,
    and later writes (and the flush at exit) go nowhere instead of failing."""
    stream = stream or sys.stderr
    try:
        print(text, file=stream, flush=True)
    except (OSError, ValueError):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _fail(args: argparse.Namespace, message: str) -> int:
    _say(f"{command_name(args)}: {message}")
    return FAILURE


def _progress(name: str, detail: str) -> None:
    _say(f"{name:<9} {detail}")


def _announce(
    args: argparse.Namespace, endpoints: dict[str, str], env: dict[str, str], workdir: Path
) -> None:
    bin_dir = str(Path(sys.executable).parent)  # the venv's bin, where idv-worker is
    exports = [f'export PATH={shlex.quote(bin_dir)}:"$PATH"']
    exports += [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    env_file = workdir / "env.sh"
    env_file.write_text("\n".join(exports) + "\n")
    if args.json:
        doc = {**endpoints, "env": env, "dir": str(workdir), "bin": bin_dir}
        _say(json.dumps(doc, sort_keys=True), sys.stdout)
        return
    lines = [
        f"# the local stack is up (data and logs: {workdir}); Ctrl-C stops it.",
        f"# Apply these in the second shell (or: . {shlex.quote(str(env_file))}); without them",
        "# idv-worker is not on PATH and every command targets Redis at 127.0.0.1:6379.",
        *exports,
        f"# receiver {endpoints['receiver_url']}, metrics {endpoints['metrics_url']}",
    ]
    _say("\n".join(lines), sys.stdout)
