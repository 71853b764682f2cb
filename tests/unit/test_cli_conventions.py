"""Every subcommand of ``idv-worker`` follows the same conventions (``worker/cli.py``).

Metavars are upper-case, read commands (status, list, show, errors and the one-shot views)
take ``--json``, no command takes a connection flag (connections come from ``IDV_*``), usage
errors exit 2, and ``--version`` names the version.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from worker import __version__
from worker.cli import build_parser, main

READ_VERBS = {"status", "list", "show", "errors"}
READ_COMMANDS = {"config", "doctor", "metrics"}
UPPER = re.compile(r"^[A-Z][A-Z0-9_]*([:=.][A-Z][A-Z0-9_]*)*$")


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser below the top one, with the words that reach it."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            yield (*path, name), sub
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(build_parser()))
IDS = [" ".join(path) for path, _ in COMMANDS]
READS = [
    (path, parser)
    for path, parser in COMMANDS
    if path[-1] in READ_VERBS or " ".join(path) in READ_COMMANDS
]


def _metavars(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    """(option or dest, metavar as shown in usage) of every argument that takes a value."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action.dest, str(action.metavar)
            continue
        if action.nargs == 0 or action.help == argparse.SUPPRESS:
            continue
        if action.metavar is not None:
            shown = action.metavar
        elif action.choices is not None:
            shown = "{" + ",".join(map(str, action.choices)) + "}"
        else:
            shown = action.dest if not action.option_strings else action.dest.upper()
        for part in shown if isinstance(shown, tuple) else (shown,):
            yield (action.option_strings or [action.dest])[0], part


def test_the_walk_finds_every_group() -> None:
    groups = {path[0] for path, _ in COMMANDS}
    assert {"api", "batch", "dlq", "quota", "ledger", "dev", "emulator", "s3"} <= groups
    assert ("dev", "up") in {path for path, _ in COMMANDS}
    assert {("quota", "status"), ("dlq", "show"), ("batch", "list")} <= {p for p, _ in READS}


def test_the_metavar_check_sees_lower_case_and_choices() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("batch_id")
    parser.add_argument("--format", choices=("csv", "jsonl"))
    parser.add_argument("--limit", type=int)
    shown = [m for _, m in _metavars(parser)]
    assert shown == ["batch_id", "{csv,jsonl}", "LIMIT"]
    assert [bool(UPPER.match(m)) for m in shown] == [False, False, True]


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_metavars_are_upper_case(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    wrong = [(name, shown) for name, shown in _metavars(parser) if not UPPER.match(shown)]
    assert wrong == []


@pytest.mark.parametrize(("path", "parser"), READS, ids=[" ".join(p) for p, _ in READS])
def test_read_commands_accept_json(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    options = {o for a in parser._actions for o in a.option_strings}
    assert "--json" in options


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=IDS)
def test_no_connection_flags(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    options = {o for a in parser._actions for o in a.option_strings}
    assert not {o for o in options if re.search(r"redis|broker|s3-endpoint|^--endpoint", o)}


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"idv-worker {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["batch", "export", "b1", "--only", "nope"],
        ["batch", "export", "b1", "--format", "xml"],
        ["dlq", "show", "tx"],
    ],
    ids=" ".join,
)
def test_invalid_input_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"idv-worker {argv[0]}" in capsys.readouterr().err


def test_retention_days_below_one_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["retention", "--print", "--days", "0"]) == 2
    assert capsys.readouterr().err == "idv-worker retention: --days must be at least 1\n"


def _args(*argv: str) -> argparse.Namespace:
    return argparse.Namespace(command=argv[0], **{f"{argv[0]}_command": argv[1]})


def test_one_wording_for_an_unreachable_redis(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker.commands.output import redis_unreachable

    monkeypatch.setenv("IDV_REDIS_URL", "redis://app:sekret@10.0.0.5:6380/2")
    assert redis_unreachable(_args("batch", "list"), ConnectionError("refused")) == 1
    assert capsys.readouterr().err == (
        "idv-worker batch list: Redis unreachable at redis://app:***@10.0.0.5:6380/2 "
        "(ConnectionError)\n"
    )
    # Not set: the default address, and a word on why it was used.
    monkeypatch.delenv("IDV_REDIS_URL")
    assert redis_unreachable(_args("ledger", "status"), TimeoutError()) == 1
    assert capsys.readouterr().err == (
        "idv-worker ledger status: Redis unreachable at redis://127.0.0.1:6379/0 (TimeoutError); "
        "IDV_REDIS_URL is not set: set it (or apply the exports of `dev up`)\n"
    )


def test_an_error_code_is_printed_once() -> None:
    from worker.cloudauth.errors import CloudAuthError
    from worker.commands.output import error_line
    from worker.errors import IdvError

    signed = CloudAuthError("the signature does not match", code="SignatureDoesNotMatch")
    assert error_line(signed).count("SignatureDoesNotMatch") == 1
    assert error_line(signed).startswith("SignatureDoesNotMatch: the signature does not match")
    plain = IdvError("quota exhausted")
    plain.code = "Throttling"
    assert error_line(plain) == "Throttling: quota exhausted"
