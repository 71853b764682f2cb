"""``idv-worker batch``: submit manifests of document images for DocOcrV2 and follow them.

idv-worker batch submit backlog.csv          # prints the batch id (resubmit = resume)
idv-worker batch status BATCH                # live progress bar (--once, --json)
idv-worker batch list
idv-worker batch errors BATCH                # invalid / failed / uncertain rows + reasons
idv-worker batch export BATCH --format csv -o results.csv
idv-worker batch pause|resume|cancel BATCH
idv-worker batch retry-failed BATCH [--include-uncertain]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import redis

from worker.batch import (
    BatchAPI,
    BatchNotFound,
    BatchState,
    BatchStateError,
    ItemStatus,
    ManifestError,
    SubmitError,
    follow,
    render_block,
    render_table,
)
from worker.commands.output import INVALID, fail, redis_unreachable
from worker.flows import batches
from worker.keys import InvalidKeyError

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    """Add the ``batch`` command group."""
    parser = subparsers.add_parser(
        "batch",
        help="bulk re-verification: DocOcrV2 over a manifest of document images",
        description="Submit a CSV/JSONL manifest of document images and follow its batch.",
    )
    commands = parser.add_subparsers(dest="batch_command", metavar="SUBCOMMAND")
    commands.required = True
    _add_submit(commands)
    _add_status(commands)
    _add_list(commands)
    _add_errors(commands)
    _add_export(commands)
    _add_pause(commands)
    _add_resume(commands)
    _add_cancel(commands)
    _add_retry_failed(commands)


def _add_submit(commands: Any) -> None:
    submit = commands.add_parser(
        "submit",
        help="submit a manifest (CSV or JSONL); prints the batch id",
        description="Rows: image (path, s3://bucket/key or http(s) URL), doc_type, and optional "
        "card_side, spoof, face_quality, id_threshold, merchant_user_id, item_id. Submitting "
        "the same manifest again resumes its batch.",
    )
    submit.add_argument("manifest", metavar="MANIFEST", help="path of the manifest file")
    submit.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        metavar="FORMAT",
        help="%(choices)s (default: from the name)",
    )
    submit.add_argument("--doc-type", metavar="CODE", help="DocType for rows without one")
    submit.add_argument(
        "--chunk-size", type=int, metavar="ROWS", help="rows per chunk (new batches only)"
    )
    submit.add_argument("--json", action="store_true", help="print the result as JSON")
    submit.set_defaults(handler=_submit)


def _add_status(commands: Any) -> None:
    status = commands.add_parser("status", help="progress of a batch (live unless --once)")
    status.add_argument("batch_id", metavar="BATCH")
    status.add_argument("--once", action="store_true", help="print a summary and exit")
    status.add_argument("--json", action="store_true", help="print JSON and exit")
    status.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between updates"
    )
    status.set_defaults(handler=_status)


def _add_list(commands: Any) -> None:
    listing = commands.add_parser("list", help="recent batches")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="default 50")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.set_defaults(handler=_list)


def _add_errors(commands: Any) -> None:
    errors = commands.add_parser("errors", help="invalid, failed and uncertain rows with reasons")
    errors.add_argument("batch_id", metavar="BATCH")
    errors.add_argument("--json", action="store_true", help="one JSON object per line")
    errors.set_defaults(handler=_errors)


def _add_export(commands: Any) -> None:
    export = commands.add_parser("export", help="results, one line per manifest row")
    export.add_argument("batch_id", metavar="BATCH")
    export.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", metavar="FORMAT",
        help="%(choices)s (default %(default)s)",
    )  # fmt: skip
    export.add_argument(
        "-o", "--output", metavar="FILE", help="file to write (default: standard output)"
    )
    export.add_argument(
        "--only",
        type=_statuses,
        metavar="STATUSES",
        help="comma-separated statuses: " + ",".join(s.value for s in ItemStatus),
    )
    export.set_defaults(handler=_export)


def _add_pause(commands: Any) -> None:
    pause = commands.add_parser("pause", help="stop sending calls for a batch")
    pause.add_argument("batch_id", metavar="BATCH")
    pause.add_argument("--reason", metavar="TEXT", default="paused by operator")
    pause.set_defaults(handler=_pause)


def _add_resume(commands: Any) -> None:
    resume = commands.add_parser("resume", help="resume a paused batch")
    resume.add_argument("batch_id", metavar="BATCH")
    resume.add_argument(
        "--force", action="store_true", help="also re-enqueue chunks thought to be queued"
    )
    resume.set_defaults(handler=_resume)


def _add_cancel(commands: Any) -> None:
    cancel = commands.add_parser("cancel", help="stop a batch for good")
    cancel.add_argument("batch_id", metavar="BATCH")
    cancel.set_defaults(handler=_cancel)


def _add_retry_failed(commands: Any) -> None:
    retry = commands.add_parser("retry-failed", help="send failed rows again")
    retry.add_argument("batch_id", metavar="BATCH")
    retry.add_argument(
        "--include-uncertain",
        action="store_true",
        help="also re-send rows whose earlier call may have been processed (and billed)",
    )
    retry.set_defaults(handler=_retry)


@contextlib.contextmanager
def _api() -> Iterator[BatchAPI]:
    api = batches()
    try:
        yield api
    finally:
        api.close()


def _guard(args: argparse.Namespace, run: Callable[[BatchAPI], int]) -> int:
    try:
        with _api() as api:
            return run(api)
    except BatchNotFound as exc:
        return fail(args, f"no batch {exc.batch_id}", INVALID)
    except InvalidKeyError as exc:
        return fail(args, str(exc), INVALID)
    except ManifestError as exc:
        return fail(args, f"manifest: {exc}", INVALID)
    except BatchStateError as exc:  # the operator asked for what the state does not allow
        return fail(args, str(exc), INVALID)
    except SubmitError as exc:
        return fail(args, str(exc))
    except redis.RedisError as exc:
        return redis_unreachable(args, exc)


def _submit(args: argparse.Namespace) -> int:
    def run(api: BatchAPI) -> int:
        result = api.submit(
            args.manifest, fmt=args.format, doc_type=args.doc_type, chunk_size=args.chunk_size
        )
        if not result.created and result.state is BatchState.CANCELLED:
            return fail(
                args,
                f"batch {result.batch_id} of this manifest was cancelled and is not resumed "
                f"(`idv-worker erase --batch {result.batch_id}`, then submit it again)",
                INVALID,
            )
        if args.json:
            print(
                json.dumps(
                    {
                        "batch_id": result.batch_id,
                        "created": result.created,
                        "state": result.state.value,
                        "rows": result.total_rows,
                        "invalid_rows": result.invalid_rows,
                        "chunks": result.chunks,
                        "enqueued": result.enqueued,
                        "seconds": round(result.seconds, 3),
                        "invalid_sample": [
                            {"row": r, "line": ln, "reason": why}
                            for r, ln, why in result.invalid_sample
                        ],
                    }
                )
            )
            return 0
        what = "submitted"
        if not result.created:
            done = result.state is BatchState.COMPLETED
            what = f"already known ({result.state.value}), " + (
                "nothing to do" if done else "resumed"
            )
        print(
            f"batch {result.batch_id} {what}: {result.total_rows} rows, "
            f"{result.invalid_rows} invalid at submission, {result.enqueued} chunk messages sent",
            file=sys.stderr,
        )
        for row, line, reason in result.invalid_sample:
            print(f"  row {row} (line {line}): {reason}", file=sys.stderr)
        if result.invalid_rows > len(result.invalid_sample):
            print(f"  ... see: idv-worker batch errors {result.batch_id}", file=sys.stderr)
        print(result.batch_id)
        return 0

    return _guard(args, run)


def _status(args: argparse.Namespace) -> int:
    def run(api: BatchAPI) -> int:
        if args.json:
            print(json.dumps(api.status(args.batch_id).as_dict()))
            return 0
        if args.once:
            print(render_block(api.status(args.batch_id)))
            return 0
        try:
            follow(
                lambda: api.status(args.batch_id),
                sys.stdout,
                interval=max(0.1, args.interval),
                tty=sys.stdout.isatty(),
            )
        except KeyboardInterrupt:
            print()
        return 0

    return _guard(args, run)


def _list(args: argparse.Namespace) -> int:
    def run(api: BatchAPI) -> int:
        items = api.list(args.limit)
        if args.json:
            print(json.dumps({"batches": [p.as_dict() for p in items]}))
        else:
            print(render_table(items))
        return 0

    return _guard(args, run)


def _errors(args: argparse.Namespace) -> int:
    def run(api: BatchAPI) -> int:
        count = 0
        for row in api.problems(args.batch_id):
            count += 1
            if args.json:
                print(json.dumps(row, ensure_ascii=False))
            else:
                print(
                    f"row {row['row']} (line {row['line']}): {row['status']} "
                    f"{row.get('code', '')}: {row.get('reason', '')}"
                )
        if not args.json:
            print(f"{count} rows", file=sys.stderr)
        return 0

    return _guard(args, run)


def _statuses(text: str) -> list[ItemStatus]:
    """``--only``: comma-separated item statuses (an unknown one is a usage error, exit 2)."""
    try:
        return [ItemStatus(part.strip()) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"unknown status in {text!r}") from None


def _export(args: argparse.Namespace) -> int:
    only = args.only or None

    def run(api: BatchAPI) -> int:
        out: TextIO
        with contextlib.ExitStack() as stack:
            if args.output:
                out = stack.enter_context(open(args.output, "w", encoding="utf-8", newline=""))
            else:
                out = sys.stdout
            count = api.export(args.batch_id, out, fmt=args.format, only=only)
        print(f"{count} rows exported", file=sys.stderr)
        return 0

    return _guard(args, run)


def _pause(args: argparse.Namespace) -> int:
    return _guard(args, lambda api: _show(api.pause(args.batch_id, args.reason).state.value, args))


def _resume(args: argparse.Namespace) -> int:
    return _guard(
        args, lambda api: _show(api.resume(args.batch_id, force=args.force).state.value, args)
    )


def _cancel(args: argparse.Namespace) -> int:
    return _guard(args, lambda api: _show(api.cancel(args.batch_id).state.value, args))


def _show(state: str, args: argparse.Namespace) -> int:
    print(f"batch {args.batch_id}: {state}")
    return 0


def _retry(args: argparse.Namespace) -> int:
    def run(api: BatchAPI) -> int:
        if args.include_uncertain:
            print(
                "warning: uncertain rows may already have been processed and billed by the "
                "provider; they are sent again now",
                file=sys.stderr,
            )
        result = api.retry_failed(args.batch_id, include_uncertain=args.include_uncertain)
        print(
            f"batch {result.batch_id}: {result.reset_rows} rows back to pending, "
            f"{result.enqueued} chunk messages sent ({result.state.value})"
        )
        return 0

    return _guard(args, run)


__all__ = ["register"]
