"""One runner slot: a copy of the project in which mutants are written and tested, one at a time.

Started by ``tests.mutation.runner`` as ``python -m tests.mutation.slot <copy>``. It imports
the third-party packages the tests need once, then for each request (a JSON line on stdin:
file, text, tests, timeout) writes the mutant into the copy, forks a child that runs pytest
on the given tests (``-x``: the first failure kills the mutant), restores the file and answers
one JSON line: ``{"rc": <pytest exit code or -1 on timeout>, "s": <seconds>}``.

The child runs in its own process group with ``PYTHONPATH`` on the copy, so processes the
tests start (workers, receivers) load the mutant too, and a timeout kills them all. Nothing
of the project (``worker``, ``tasks``, ``tests``) is imported before the fork: each child
imports the mutated module fresh. Bytecode is not written for mutants; the original file's
modification time is restored with its text, so its cached bytecode stays valid.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path

PROJECT = ("worker", "tasks", "tests")
# Not imported before the fork: their state must begin in the child (event loops, plugins).
SKIP_PREIMPORT = {"__main__", "asyncio", "anyio", "sniffio", "pytest", "pluggy"}
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--no-header"]


def _run_pytest(copy: Path, tests: list[str], log: Path, *, write_bytecode: bool) -> int:
    """Fork, run pytest in the child, return its exit code (or -1 when ``timeout`` hit)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.setsid()
            sys.dont_write_bytecode = not write_bytecode
            if not write_bytecode:
                os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            import pytest

            code = int(pytest.main([*PYTEST_ARGS, *tests]))
        finally:
            os._exit(code)
    return pid


def _wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            _reap_group(pid)
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            _reap_group(pid)
            os.waitpid(pid, 0)
            return -1
        time.sleep(0.05)


def _reap_group(pid: int) -> None:
    """Kill whatever the tests left running (servers, workers) in the child's group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _preimport(copy: Path, tests: list[str], log: Path) -> None:
    """Import, in this process, the third-party modules a collection of the tests imports."""
    names = log.with_suffix(".modules")
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            import pytest

            code = int(pytest.main([*PYTEST_ARGS, "--collect-only", *tests]))
            names.write_text("\n".join(sorted(sys.modules)))
        finally:
            os._exit(code)
    os.waitpid(pid, 0)
    for name in names.read_text().split("\n"):
        top = name.split(".")[0]
        if top in PROJECT or top.startswith("_") or top in SKIP_PREIMPORT:
            continue
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    for name in list(sys.modules):  # nothing of the project may outlive the fork
        if name.split(".")[0] in PROJECT:
            del sys.modules[name]


def main() -> None:
    copy = Path(sys.argv[1]).resolve()
    os.chdir(copy)
    sys.path.insert(0, str(copy))
    os.environ["PYTHONPATH"] = str(copy)
    log = copy.parent / "pytest.log"
    first = json.loads(sys.stdin.readline())
    _preimport(copy, first["tests"], log)
    print(json.dumps({"ready": True}), flush=True)
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        req = json.loads(line)
        path = copy / req["file"]
        original = path.read_text()
        stat = path.stat()
        mutated = req.get("text")
        started = time.monotonic()
        try:
            if mutated is not None:
                path.write_text(mutated)
            pid = _run_pytest(copy, req["tests"], log, write_bytecode=mutated is None)
            rc = _wait(pid, float(req["timeout"]))
        finally:
            if mutated is not None:
                path.write_text(original)
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        elapsed = time.monotonic() - started
        tail = ""
        if mutated is None and rc != 0:
            tail = log.read_text()[-3000:]
        print(json.dumps({"rc": rc, "s": round(elapsed, 2), "log": tail}), flush=True)


if __name__ == "__main__":
    main()
