"""Stops the local stack's process groups when the process that started them is gone.

``Reaper`` (used by ``DevStack``) runs this file as a small child process in its own session
and writes the process-group id of each piece of the stack to its standard input, one a line
(``+PGID`` when a piece starts, ``-PGID`` when it was stopped). When that input ends - the
stack closed it, or the stack's process died, even by SIGKILL - every group still listed gets
SIGTERM, and SIGKILL after ``GRACE_S``. A whole group goes, so the children of a piece (a
Celery worker's pool) go with it. Nothing here is used in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

GRACE_S = 10.0


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap(groups: set[int], grace_s: float = GRACE_S) -> None:
    """SIGTERM every group of ``groups``; SIGKILL those still there after ``grace_s``."""
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_alive(g) for g in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)


def main() -> None:
    """Read ``+PGID`` / ``-PGID`` lines until the input ends, then ``reap`` what is listed."""
    # The terminal's hang-up or Ctrl-C is for the stack's process, not for this one.
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        sign, number = line[:1], line[1:].strip()
        if number.isdigit():
            (groups.add if sign == "+" else groups.discard)(int(number))
    reap(groups)


class Reaper:
    """The watcher process of one stack; ``watch``/``forget`` groups, ``close`` when done."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, __file__], stdin=subprocess.PIPE, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def _send(self, line: str) -> None:
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.write(line.encode())
            self._proc.stdin.flush()

    def watch(self, group: int) -> None:
        self._send(f"+{group}\n")

    def forget(self, group: int) -> None:
        self._send(f"-{group}\n")

    def close(self) -> None:
        """End its input (it stops whatever is still listed) and wait for it."""
        assert self._proc.stdin is not None
        with contextlib.suppress(OSError):
            self._proc.stdin.close()
        self._proc.wait(timeout=GRACE_S + 5)


if __name__ == "__main__":
    main()
