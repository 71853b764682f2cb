"""``idv-worker flows start``, ``idv-worker ledger import|status|show``, ``idv-worker archive run``.

Exit codes: 0 done, 1 a failure (Redis, the provider), 2 invalid input (nothing written for the
invalid lines of an import; they are listed with their line numbers).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import redis

from worker.commands.output import INVALID, fail
from worker.errors import IdvError


def register(subparsers: Any) -> None:
    """Add the ``flows``, ``ledger`` and ``archive`` command groups."""
    flows = subparsers.add_parser("flows", help="start verification flows (recorded in the ledger)")
    fcmd = flows.add_subparsers(dest="flows_command", metavar="SUBCOMMAND", required=True)
    start = fcmd.add_parser("start", help="Initialize one flow and record it; prints its URL")
    start.add_argument("--product", required=True, metavar="CODE", help="ProductCode")
    start.add_argument("--merchant-user-id", required=True, metavar="ID")
    start.add_argument("--merchant-biz-id", metavar="ID", help="default: a new random id")
    start.add_argument("--doc-type", metavar="CODE")
    start.add_argument("--meta-info", metavar="JSON", help="MetaInfo from the user's device")
    start.add_argument("--return-url", metavar="URL")
    start.add_argument("--json", action="store_true", help="print one JSON object")
    start.set_defaults(handler=_guard(_start))

    ledger = subparsers.add_parser("ledger", help="the transaction ledger: import, status, show")
    lcmd = ledger.add_subparsers(dest="ledger_command", metavar="SUBCOMMAND", required=True)
    imp = lcmd.add_parser(
        "import",
        help="record transactions created elsewhere (JSONL or CSV: transactionId, productCode, "
        "merchantBizId, completedAt or createdAt as epoch seconds or ISO 8601)",
    )
    imp.add_argument("file", metavar="FILE", help="a .jsonl or .csv file, '-' for JSONL on stdin")
    imp.add_argument("--json", action="store_true", help="print one JSON object")
    imp.set_defaults(handler=_guard(_import))
    status = lcmd.add_parser("status", help="counts by state, at-risk transactions, forecast")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=_guard(_status))
    show = lcmd.add_parser("show", help="one transaction's entry and history")
    show.add_argument("transaction_id", metavar="TID")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=_guard(_show))

    archive = subparsers.add_parser("archive", help="archival of results before day 30")
    acmd = archive.add_subparsers(dest="archive_command", metavar="SUBCOMMAND", required=True)
    run = acmd.add_parser(
        "run", help="queue archival now for open transactions (a backfill), in the archival lane"
    )
    run.add_argument(
        "--before", metavar="DATE", help="only those the provider deletes before DATE (ISO 8601)"
    )
    run.add_argument("--json", action="store_true", help="print one JSON object")
    run.set_defaults(handler=_guard(_archive_run))


def _guard(run: Any) -> Any:
    """Turn Redis and provider failures into one line and exit 1; bad input into exit 2."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return int(run(args))
        except ValueError as exc:
            return fail(args, str(exc), INVALID)
        except redis.RedisError as exc:
            return fail(args, f"Redis unavailable ({type(exc).__name__})")
        except IdvError as exc:
            return fail(args, f"{exc.code}: {exc}")

    return handler


if TYPE_CHECKING:
    from worker.wiring import Cli


def _cli() -> Cli:
    from worker.wiring import Cli

    return Cli()


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


# ------------------------------------------------------------------ flows start


def _start(args: argparse.Namespace) -> int:
    cli = _cli()
    try:
        flow = cli.flow_starter().start(
            product_code=args.product,
            merchant_user_id=args.merchant_user_id,
            merchant_biz_id=args.merchant_biz_id,
            doc_type=args.doc_type,
            meta_info=args.meta_info,
            return_url=args.return_url,
        )
    finally:
        cli.close()
    _print(args, flow.to_dict(), f"{flow.transaction_id}\t{flow.transaction_url or '-'}")
    return 0


# ------------------------------------------------------------------ ledger import


def _when(value: object, line: int, name: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"line {line}: {name} is neither epoch seconds nor ISO 8601") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    stream: IO[str]
    if path == "-":
        stream = sys.stdin
    else:
        file = Path(path)
        if not file.is_file():
            raise ValueError(f"no such file: {file}")
        stream = file.open(encoding="utf-8", newline="")
    try:
        if path.endswith(".csv"):
            for number, row in enumerate(csv.DictReader(stream), start=2):
                yield number, dict(row)
            return
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"line {number}: not a JSON object") from None
            if not isinstance(row, dict):
                raise ValueError(f"line {number}: not a JSON object")
            yield number, row
    finally:
        if stream is not sys.stdin:
            stream.close()


def _import(args: argparse.Namespace) -> int:
    from worker.keys import parse_transaction_id

    rows: list[tuple[str, str, str, float | None, float | None]] = []
    problems: list[str] = []
    for number, row in _rows(args.file):
        try:
            tid = parse_transaction_id(row.get("transactionId"), "transactionId")
            product = str(row.get("productCode") or "")
            biz = str(row.get("merchantBizId") or "")
            if not product or not biz:
                raise ValueError("productCode and merchantBizId are required")
            completed = _when(row.get("completedAt"), number, "completedAt")
            created = _when(row.get("createdAt"), number, "createdAt")
            rows.append((tid, product, biz, completed, created))
        except ValueError as exc:
            message = str(exc)
            problems.append(message if message.startswith("line ") else f"line {number}: {message}")
    if problems:
        for problem in problems[:50]:
            print(problem, file=sys.stderr)
        return fail(args, f"{len(problems)} invalid line(s); nothing was imported", INVALID)
    cli = _cli()
    added = 0
    try:
        for tid, product, biz, completed, created in rows:
            if completed is not None:
                added += cli.ledger.record_completed(tid, product, biz, completed)
            else:
                added += cli.ledger.record_start(
                    tid, product, biz, source="import", created_at=created
                )
    finally:
        cli.close()
    known = len(rows) - added
    _print(
        args,
        {"read": len(rows), "added": added, "already_known": known},
        f"{len(rows)} read, {added} added, {known} already known",
    )
    return 0


# ------------------------------------------------------------------ ledger status / show


def _status(args: argparse.Namespace) -> int:
    cli = _cli()
    try:
        plan = cli.reconciler().forecast()
        queued = {"realtime": cli.ledger.queued("rt"), "archival": cli.ledger.queued("ar")}
    finally:
        cli.close()
    data = {**plan.to_dict(), "queued": queued}
    lines = ["state            transactions"]
    lines += [f"{state:<16} {n:>12}" for state, n in plan.counts.items()]
    lines.append("")
    lines.append("open, by time left before the provider deletes them:")
    lines += [f"  {name:<8} {n:>10}" for name, n in plan.deleting_in.items()]
    lines.append(f"at risk (deleted within a day, not archived): {plan.at_risk}")
    lines.append(f"forecast: {plan.summary()}")
    _print(args, data, "\n".join(lines))
    return 0


def _show(args: argparse.Namespace) -> int:
    from worker.keys import parse_transaction_id

    tid = parse_transaction_id(args.transaction_id, "TID")
    cli = _cli()
    try:
        entry = cli.ledger.get(tid)
    finally:
        cli.close()
    if entry is None:
        return fail(args, f"transaction {tid} is not in the ledger")
    data = entry.to_dict()
    lines = [f"{tid}: {entry.state.value} ({entry.product_code}, {entry.merchant_biz_id})"]
    for state, at in entry.history.items():
        lines.append(f"  {_iso(at)}  {state.value}")
    if entry.due_at is not None:
        lines.append(f"  next work due {_iso(entry.due_at)} ({entry.queue})")
    lines.append(f"  provider deletes it {_iso(entry.deletes_at)}; attempts {entry.attempts}")
    if entry.reason:
        lines.append(f"  reason: {entry.reason}")
    _print(args, data, "\n".join(lines))
    return 0


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------ archive run


def _archive_run(args: argparse.Namespace) -> int:
    before = _when(args.before, 0, "--before") if args.before else None
    cli = _cli()
    moved = 0
    try:
        ledger = cli.ledger
        horizon = before if before is not None else time.time() + 10 * 365 * 86400
        for tid in ledger.deleting_before(horizon, 1_000_000):
            entry = ledger.get(tid)
            if entry is None or entry.state.final or entry.state.value == "initialized":
                continue
            moved += ledger.transition(tid, entry.state, queue="ar", due=time.time())
        report = cli.reconciler().archive_sweep()
    finally:
        cli.close()
    _print(
        args,
        {"scheduled": moved, "queued_now": report.claimed},
        f"{moved} transaction(s) scheduled for archival; {report.claimed} queued now "
        "(the archival sweep queues the rest as the archival queue drains)",
    )
    return 0
