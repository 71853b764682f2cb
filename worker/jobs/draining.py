"""Whether this worker node is shutting down, seen from its pool processes.

Kubernetes scales a lane in by sending SIGTERM to the Celery main process: a warm shutdown,
which stops taking messages and waits for the running tasks. A pool process hears nothing of
it, so a chunk task would run on to its time budget. The flag lives in one byte of anonymous
shared memory mapped before the pool forks: the main process sets it (``worker_shutting_down``),
every pool process reads it between rows and hands the rest of its chunk back to the queue.
"""

from __future__ import annotations

import mmap

_flag = mmap.mmap(-1, 1)  # MAP_SHARED | MAP_ANONYMOUS: inherited by every forked child


def start_draining() -> None:
    """Mark this node as draining (its pool processes see it at once)."""
    _flag[0] = 1


def draining() -> bool:
    """Whether this node (or the process that forked this one) is shutting down."""
    return _flag[0] == 1


def reset_draining() -> None:
    """Clear the flag (for a node that reuses its process, and for tests)."""
    _flag[0] = 0
