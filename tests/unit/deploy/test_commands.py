"""Every command the deploy files run exists, with the options they pass.

``idv-worker`` lines are parsed by the CLI's own parser; ``celery`` lines by Celery's click
commands (parsed, never run). Commands that other work is adding are expected failures until
they land, and pass from then on.
"""

from __future__ import annotations

import importlib

import click
import pytest
from celery.bin.base import CLIContext
from celery.bin.celery import celery as celery_group
from celery.worker.control import Panel

from tests.unit.deploy.files import Command, all_commands
from worker.app import create_app
from worker.cli import build_parser

COMMANDS = all_commands()
# Programs that may appear besides ours; they come with the base image.
SYSTEM_PROGRAMS = {"sh", "python"}
# idv-worker commands another change is adding: (group, command) as written in the files.
PENDING: set[tuple[str, ...]] = set()


def _cases(program: str) -> list[object]:
    cases: list[object] = []
    for command in COMMANDS:
        if command.argv[0] != program:
            continue
        marks = []
        if program == "idv-worker" and _pending(command.argv[1:]):
            marks.append(pytest.mark.xfail(reason="added by the reliability work", strict=False))
        cases.append(pytest.param(command, id=str(command), marks=marks))
    return cases


def _pending(args: tuple[str, ...]) -> bool:
    return any(args[: len(p)] == p for p in PENDING)


def test_the_files_run_commands() -> None:
    programs = {c.argv[0] for c in COMMANDS}
    assert {"idv-worker", "celery"} <= programs


@pytest.mark.parametrize("command", COMMANDS, ids=[str(c) for c in COMMANDS])
def test_only_known_programs_are_run(command: Command) -> None:
    assert command.argv[0] in {"idv-worker", "celery"} | SYSTEM_PROGRAMS


@pytest.mark.parametrize("command", _cases("idv-worker"))
def test_idv_worker_command_exists(command: Command) -> None:
    parser = build_parser()
    try:
        args = parser.parse_args(list(command.argv[1:]))
    except SystemExit as exc:  # argparse's answer to an unknown command or option
        pytest.fail(f"{command}: rejected by the idv-worker parser (exit {exc.code})")
    assert getattr(args, "handler", None) is not None, f"{command}: names no command"


@pytest.mark.parametrize("command", _cases("celery"))
def test_celery_command_exists(command: Command) -> None:
    argv = list(command.argv[1:])
    assert argv[:2] == ["-A", "worker.app"], "every celery line names the app first"
    assert importlib.import_module("worker.app").app is not None
    name, rest = argv[2], argv[3:]
    root = click.Context(celery_group, info_name="celery")
    root.obj = CLIContext(app=create_app(), no_color=True, workdir=None, quiet=True)
    subcommand = celery_group.get_command(root, name)
    assert subcommand is not None, f"{command}: celery has no {name!r} command"
    try:
        parsed = subcommand.make_context(name, rest, parent=root)
    except click.UsageError as exc:
        pytest.fail(f"{command}: {exc.format_message()}")
    assert parsed.args == [], f"{command}: unexpected arguments {parsed.args}"
    if name == "inspect":
        info = Panel.meta.get(parsed.params["command"])
        assert info is not None, f"{command}: no such remote control command"
        assert info.type == "inspect"
