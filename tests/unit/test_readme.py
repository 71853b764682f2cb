"""The README documents every configuration variable and every command group."""

from pathlib import Path

from worker.cli import build_parser
from worker.settings import ENV_PREFIX, OWNERS

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [
        ENV_PREFIX + name.upper()
        for name in OWNERS  # every field of every settings part
        if f"`{ENV_PREFIX}{name.upper()}`" not in README
    ]
    assert missing == []


def test_every_command_group_is_documented() -> None:
    parser = build_parser()
    groups = next(a for a in parser._actions if a.dest == "command").choices
    assert groups
    missing = [name for name in groups if f"idv-worker {name}" not in README]
    assert missing == []


def test_the_result_record_schema_in_the_readme_is_current() -> None:
    import json

    from worker.onboarding import ResultRecord

    schema = json.dumps(ResultRecord.model_json_schema(), indent=2)
    assert f"```json\n{schema}\n```" in README
