"""Lua scripts of the batch store, kept as files in ``lua/`` beside this module.

Every script touches the keys of one batch only; all keys of a batch share the hash tag
``{batch:<id>}`` (see ``worker.batch.layout`` for the layout). Item statuses are one byte per
row in the string ``st`` (NUL = pending) with their totals in the hash ``n``; ``prelude.lua``
keeps the two in step, so a counter can never drift from the statuses however often a step is
repeated after a crash. A script whose file says ``-- Needs prelude.lua.`` gets it prepended.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

_NEEDS_PRELUDE = "-- Needs prelude.lua."


@cache
def load(name: str) -> str:
    """The source of ``lua/<name>.lua``, with the prelude prepended where the script needs it."""
    lua = resources.files("worker.batch").joinpath("lua")
    body = lua.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    if _NEEDS_PRELUDE not in body:
        return body
    return lua.joinpath("prelude.lua").read_text(encoding="utf-8") + "\n" + body


SUBMIT_CHUNK = load("submit_chunk")
BEGIN = load("begin")
CLAIM = load("claim")
FINISH = load("finish")
CHUNK_ACQUIRE = load("chunk_acquire")
CHUNK_RELEASE = load("chunk_release")
REQUEUE = load("requeue")
TRANSITION = load("transition")
RESET = load("reset")
