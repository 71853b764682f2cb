"""``idv-worker callbacks replay FILE``: inject provider callbacks from a JSONL file.

One JSON object per line, either the callback's parameters themselves::

    {"transactionId": "hk...", "passed": "Y", "subCode": "200", "callbackToken": "..."}

or wrapped, with the time the callback was originally received (epoch seconds or ISO 8601;
the 30-minute evidence window runs from it)::

    {"params": {...}, "received_at": "2026-05-01T10:00:00Z"}
    {"query": "transactionId=hk...&passed=Y&subCode=200&callbackToken=...", "received_at": ...}

Each line goes through the same checks as the receiver. ``--trust`` skips the token check (the
operator vouches for the file), ``--force`` enqueues lines already seen (the worker's own
idempotency still prevents double work). ``-`` reads standard input. Exit code 0 when every line
was accepted or a duplicate, 1 when any was rejected, 2 on a usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl

from worker.commands.output import INVALID, fail


def register(subparsers: Any) -> None:
    """Add ``callbacks replay``."""
    parser = subparsers.add_parser("callbacks", help="inject provider callbacks")
    sub = parser.add_subparsers(dest="callbacks_command", metavar="SUBCOMMAND")
    sub.required = True
    replay = sub.add_parser("replay", help="replay callbacks from a JSONL file")
    replay.add_argument("file", metavar="FILE", help="JSONL file ('-' for standard input)")
    replay.add_argument("--trust", action="store_true", help="skip the callbackToken check")
    replay.add_argument("--force", action="store_true", help="enqueue callbacks already seen")
    replay.set_defaults(handler=run_replay)


class LineError(ValueError):
    """A line that is not a callback record."""


def parse_line(text: str) -> tuple[list[tuple[str, str]], float | None]:
    """One JSONL line -> (parameters, received_at epoch or None)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise LineError("not JSON") from None
    if not isinstance(data, dict):
        raise LineError("not a JSON object")
    received_at = _epoch(data.get("received_at"))
    if "query" in data:
        if not isinstance(data["query"], str):
            raise LineError("query must be a string")
        return parse_qsl(data["query"].lstrip("?"), keep_blank_values=True), received_at
    params = data.get("params", data if "params" not in data else None)
    if not isinstance(params, dict):
        raise LineError("params must be an object")
    out = [(str(k), _scalar(v)) for k, v in params.items() if k != "received_at"]
    return out, received_at


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise LineError("parameter values must be strings or numbers")
    return str(value)


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise LineError("received_at is not epoch seconds or ISO 8601") from None
        if stamp.tzinfo is None:
            raise LineError("received_at needs a time zone")
        return stamp.timestamp()
    raise LineError("received_at is not epoch seconds or ISO 8601")


def _lines(stream: IO[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, 1):
        if line.strip():
            yield number, line


def run_replay(args: argparse.Namespace) -> int:
    """Submit every line; print one summary line per rejected line and the totals."""
    from worker.onboarding import CallbackRejected
    from worker.wiring import Cli

    counts: Counter[str] = Counter()
    stream: IO[str]
    if args.file == "-":
        stream = sys.stdin
    else:
        path = Path(args.file)
        if not path.is_file():
            return fail(args, f"no such file: {path}", INVALID)
        stream = path.open(encoding="utf-8")
    cli = Cli()
    intake = cli.intake()
    try:
        for number, line in _lines(stream):
            try:
                params, received_at = parse_line(line)
                result = intake.submit(
                    params, received_at=received_at, verify_token=not args.trust, force=args.force
                )
                counts[result.status] += 1
            except LineError as exc:
                counts["rejected"] += 1
                print(f"line {number}: {exc}", file=sys.stderr)
            except CallbackRejected as exc:
                counts["rejected"] += 1
                print(f"line {number}: {exc.status} {exc.reason}", file=sys.stderr)
    finally:
        cli.close()
        if stream is not sys.stdin:
            stream.close()
    print(json.dumps({k: counts.get(k, 0) for k in ("accepted", "duplicate", "rejected")}))
    return 1 if counts["rejected"] else 0
