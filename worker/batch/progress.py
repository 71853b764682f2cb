"""Rendering of batch progress: a one-line bar (live status), a summary block, a table."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TextIO

from worker.batch.model import BatchState, ItemStatus, Progress

FINAL_STATES = (BatchState.COMPLETED, BatchState.CANCELLED, BatchState.PAUSED)


def format_duration(seconds: float | None) -> str:
    """``2h05m``, ``4m10s``, ``9s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _when(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def bar(fraction: float, width: int = 28) -> str:
    """``[#######.....]`` for a fraction in 0..1."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def render_line(p: Progress, width: int = 28) -> str:
    """One line: bar, percentage, counts, rate, ETA and state."""
    fraction = p.processed / p.total if p.total else (1.0 if p.submitted else 0.0)
    c = p.counts
    eta = p.eta_s
    if eta is not None and p.eta_observed_s is not None:
        eta = max(eta, p.eta_observed_s)
    parts = [
        bar(fraction, width),
        f"{fraction * 100:5.1f}%",
        f"done {c.get(ItemStatus.DONE, 0)}",
        f"failed {c.get(ItemStatus.FAILED, 0)}",
        f"invalid {c.get(ItemStatus.INVALID, 0)}",
    ]
    if c.get(ItemStatus.UNCERTAIN, 0):
        parts.append(f"uncertain {c[ItemStatus.UNCERTAIN]}")
    if c.get(ItemStatus.DUPLICATE, 0):
        parts.append(f"duplicate {c[ItemStatus.DUPLICATE]}")
    parts += [
        f"remaining {p.remaining}",
        f"{p.rate:.1f}/s",
        f"ETA {format_duration(eta)}" + (f" (quota {p.quota:g}/s)" if p.quota else ""),
        p.state.value + ("" if p.submitted else ", submitting"),
    ]
    return "  ".join(parts)


def render_block(p: Progress) -> str:
    """A multi-line summary of one batch (``batch status --once``)."""
    c = p.counts
    lines = [
        f"batch      {p.batch_id}",
        f"state      {p.state.value}"
        + ("" if p.submitted else " (manifest still being submitted)"),
    ]
    if p.pause_reason:
        lines.append(f"paused     {p.pause_reason}")
    at_rate = p.eta_observed_s
    lines += [
        f"manifest   {p.manifest or '-'}",
        f"rows       {p.total}",
        f"done       {c.get(ItemStatus.DONE, 0)}"
        + (
            "  (" + ", ".join(f"{k}: {v}" for k, v in sorted(p.sub_codes.items())) + ")"
            if p.sub_codes
            else ""
        ),
        f"failed     {c.get(ItemStatus.FAILED, 0)}",
        f"invalid    {c.get(ItemStatus.INVALID, 0)}",
        f"uncertain  {c.get(ItemStatus.UNCERTAIN, 0)}",
        f"duplicate  {c.get(ItemStatus.DUPLICATE, 0)}",
        f"remaining  {p.remaining}",
        f"rate       {p.rate:.2f} calls/s (quota {p.quota:g}/s)",
        f"ETA        {format_duration(p.eta_s)} at the quota"
        + (f", {format_duration(at_rate)} at the current rate" if at_rate else ""),
        f"created    {_when(p.created_at)}",
        f"last call  {_when(p.last_at)}",
        f"chunks     {p.chunks_done}/{p.chunks} complete",
    ]
    if p.results_key:
        lines.append(f"results    {p.results_key}")
    if c.get(ItemStatus.UNCERTAIN, 0):
        lines.append(
            "warning    uncertain rows may already have been billed; re-send them only with "
            "retry-failed --include-uncertain after checking"
        )
    return "\n".join(lines)


def render_table(items: Sequence[Progress]) -> str:
    """``batch list``: one row per batch."""
    head = f"{'BATCH':<22} {'STATE':<10} {'ROWS':>8} {'DONE':>8} {'FAILED':>7} {'INVALID':>7} "
    head += f"{'LEFT':>8}  CREATED"
    lines = [head]
    for p in items:
        c = p.counts
        lines.append(
            f"{p.batch_id:<22} {p.state.value:<10} {p.total:>8} {c.get(ItemStatus.DONE, 0):>8} "
            f"{c.get(ItemStatus.FAILED, 0):>7} {c.get(ItemStatus.INVALID, 0):>7} "
            f"{p.remaining:>8}  {_when(p.created_at)}"
        )
    return "\n".join(lines)


def follow(
    fetch: Callable[[], Progress],
    out: TextIO,
    *,
    interval: float = 1.0,
    tty: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    max_updates: int | None = None,
) -> Progress:
    """Redraw the progress line until the batch completes, pauses or is cancelled."""
    updates = 0
    last_line = ""
    while True:
        progress = fetch()
        line = render_line(progress)
        if tty:
            out.write("\r\x1b[2K" + line)
        elif line != last_line:
            out.write(line + "\n")
        out.flush()
        last_line = line
        updates += 1
        done = progress.state in FINAL_STATES and progress.submitted
        if done or (max_updates is not None and updates >= max_updates):
            if tty:
                out.write("\n")
            return progress
        sleep(interval)
