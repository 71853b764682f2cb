"""A stack removes the temporary folder it made for itself, never a folder it was given."""

from __future__ import annotations

from pathlib import Path

from worker.devtools import DevStack


def test_its_own_temporary_folder_goes_with_it() -> None:
    with DevStack() as stack:
        (stack.workdir / "redis.log").write_text("logs and data")
        made = stack.workdir
        assert made.is_dir()
    assert not made.exists()


def test_a_given_folder_stays(tmp_path: Path) -> None:
    given = tmp_path / "stack"
    with DevStack(given) as stack:
        (stack.workdir / "redis.log").write_text("logs and data")
    assert (given / "redis.log").read_text() == "logs and data"
