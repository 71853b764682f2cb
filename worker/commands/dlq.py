"""``idv-worker dlq``: list, show, retry and purge dead letters."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from worker.commands.output import INVALID, fail
from worker.keys import InvalidKeyError
from worker.redisio import connect, redis_target
from worker.settings import load_settings
from worker.stores import (
    DeadLetter,
    DeadLetterStore,
    NoRetryHandler,
)
from worker.wiring import Cli


def register(subparsers: Any) -> None:
    """Add the ``dlq`` command group."""
    parser = subparsers.add_parser("dlq", help="inspect and handle dead letters")
    commands = parser.add_subparsers(dest="dlq_command", metavar="SUBCOMMAND")
    commands.required = True

    list_ = commands.add_parser("list", help="dead letters, most recent failure first")
    list_.add_argument("--kind", metavar="KIND", help="only this kind (tx, item, ...)")
    list_.add_argument(
        "--limit", type=int, default=50, metavar="N", help="at most this many (default 50)"
    )
    list_.add_argument("--offset", type=int, default=0, metavar="N", help="skip this many first")
    list_.add_argument("--json", action="store_true", help="print one JSON document")
    list_.set_defaults(handler=_run(_list))

    show = commands.add_parser("show", help="one dead letter with its payload")
    _entry_arguments(show)
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=_run(_show))

    retry = commands.add_parser("retry", help="re-enqueue through the kind's retry handler")
    _entry_arguments(retry)
    retry.set_defaults(handler=_run(_retry))

    purge = commands.add_parser("purge", help="delete a dead letter without retrying it")
    _entry_arguments(purge)
    purge.set_defaults(handler=_run(_purge))


def _entry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", metavar="KIND", help="tx, item, webhook, ...")
    parser.add_argument("id", metavar="ID")


Action = Callable[[DeadLetterStore, argparse.Namespace], int]


def _run(action: Action) -> Callable[[argparse.Namespace], int]:
    """Wrap an action: build the store, report Redis and id errors as exit codes."""

    def handler(args: argparse.Namespace) -> int:
        settings = load_settings()
        client = connect(redis_target(settings.redis), socket_timeout=10)
        cli = Cli(settings, redis=client)
        try:
            # Only a retry needs the flows' handlers (and the Celery app they bring).
            store = cli.retrying_deadletters() if action is _retry else cli.deadletters
            return action(store, args)
        except InvalidKeyError as exc:
            return fail(args, str(exc), INVALID)
        except redis.RedisError as exc:
            return fail(args, f"cannot use Redis: {type(exc).__name__}")
        finally:
            cli.close()
            client.close()

    return handler


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _table(entries: Sequence[DeadLetter], total: int) -> str:
    if not entries:
        return f"no dead letters ({total} in all)"
    rows = [("KIND", "ID", "COUNT", "LAST FAILURE", "CODE", "REASON")]
    for e in entries:
        rows.append((e.kind, e.id, str(e.count), _when(e.last_at), e.code or "-", e.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) for row in rows]
    lines = [f"{line}  {row[5]}" for line, row in zip(lines, rows, strict=True)]
    lines.append(f"({len(entries)} shown, {total} in all)")
    return "\n".join(lines)


def _list(store: DeadLetterStore, args: argparse.Namespace) -> int:
    entries = store.list(args.kind, limit=args.limit, offset=args.offset)
    total = store.count(args.kind)
    if args.json:
        doc = {"total": total, "dead_letters": [e.as_dict() for e in entries]}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print(_table(entries, total))
    return 0


def _show(store: DeadLetterStore, args: argparse.Namespace) -> int:
    entry = store.get(args.kind, args.id)
    if entry is None:
        return fail(args, f"no dead letter {args.kind}:{args.id}")
    doc = entry.as_dict()
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
        return 0
    lines = [f"{entry.kind}:{entry.id}  {entry.count} failure(s), last {_when(entry.last_at)}"]
    lines += [f"  {name}: {doc[name]}" for name in ("code", "reason", "detail") if doc.get(name)]
    payload = json.dumps(doc.get("payload"), indent=2, ensure_ascii=False)
    lines.append("  payload: " + payload.replace("\n", "\n  "))
    print("\n".join(lines))
    return 0


def _retry(store: DeadLetterStore, args: argparse.Namespace) -> int:
    try:
        found = store.retry(args.kind, args.id)
    except NoRetryHandler:
        return fail(
            args, f"no retry handler is registered for kind {args.kind!r}; nothing was done"
        )
    except (InvalidKeyError, redis.RedisError):
        raise
    except Exception as exc:  # the handler's own failure: report it, keep the entry
        return fail(args, f"retry failed, dead letter kept: {type(exc).__name__}: {exc}")
    if not found:
        return fail(args, f"no dead letter {args.kind}:{args.id}")
    print(f"re-enqueued {args.kind}:{args.id}")
    return 0


def _purge(store: DeadLetterStore, args: argparse.Namespace) -> int:
    if not store.remove(args.kind, args.id):
        return fail(args, f"no dead letter {args.kind}:{args.id}")
    print(f"purged {args.kind}:{args.id}")
    return 0
