"""What an operator typing a wrong thing sees: one line, exit 2 for invalid input, no traceback.

Runs ``idv-worker`` in process (``worker.cli.main``) against a real Redis, the emulator and
moto's S3 server.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from worker.cli import build_parser, main
from worker.settings import Settings

INVALID = 2


@pytest.fixture
def env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("IDV_CALLBACK_URL", "IDV_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDV_REDIS_URL", redis_url)
    monkeypatch.setenv("IDV_BATCH_SOURCE_ROOT", "/")
    return monkeypatch


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def _batches(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    code, out, _ = _run(capsys, "batch", "list", "--json")
    assert code == 0
    batches: list[dict[str, object]] = json.loads(out)["batches"]
    return batches


def _use_s3(env: pytest.MonkeyPatch, settings: Settings) -> None:
    for name in ("s3_endpoint_url", "s3_access_key_id", "s3_secret_access_key", "s3_bucket"):
        value = getattr(settings.storage, name)
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        env.setenv(f"IDV_{name.upper()}", text)


# ------------------------------------------------------------------ flows start


def test_an_unknown_product_is_one_line_and_exit_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "flows", "start", "--product", "NOPE", "--merchant-user-id", "u")
    assert (code, out) == (INVALID, "")
    line = _one_line(err)
    assert line.startswith("idv-worker flows start: unknown product 'NOPE' (known: ")
    assert "eKYC" in line


def test_flows_start_without_a_callback_url_warns(
    env: pytest.MonkeyPatch, emulator: object, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.fixtures.emulator import EmulatorHandle

    assert isinstance(emulator, EmulatorHandle)
    env.setenv("IDV_ENDPOINT", emulator.url)
    env.setenv("IDV_ACCESS_KEY_ID", emulator.access_key_id)
    env.setenv("IDV_ACCESS_KEY_SECRET", emulator.access_key_secret)
    start = ("flows", "start", "--product", "eKYC", "--merchant-user-id", "u1", "--json")
    code, out, err = _run(capsys, *start)
    assert code == 0, err
    assert json.loads(out)["transaction_id"]
    line = _one_line(err)
    assert line.startswith("idv-worker flows start: warning: IDV_CALLBACK_URL is not set")
    # the neighbour: with a callback URL, nothing is said
    env.setenv("IDV_CALLBACK_URL", "http://127.0.0.1:9/callback")
    env.setenv("IDV_CALLBACK_TOKENS", "t" * 16)
    code, _, err = _run(capsys, *start)
    assert (code, err) == (0, "")


# ------------------------------------------------------------------ batch submit


def test_a_manifest_without_its_image_column_leaves_no_batch(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("doc_type\nID\n")
    for _ in range(2):  # a resubmit shows the same, real error
        code, out, err = _run(capsys, "batch", "submit", str(manifest))
        assert (code, out) == (INVALID, "")
        assert "no image source column" in _one_line(err)
    assert _batches(capsys) == []


@pytest.mark.parametrize("text", ["", "image,doc_type\n"], ids=["empty", "header only"])
def test_a_manifest_without_rows_is_an_error(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    code, _, err = _run(capsys, "batch", "submit", str(manifest))
    assert code == INVALID
    assert _one_line(err) == "idv-worker batch submit: manifest: no rows: the manifest is empty"
    assert _batches(capsys) == []


def test_resubmitting_a_cancelled_batch_does_not_say_resumed(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"\xff\xd8\xff")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image,doc_type\n{image},00000001\n")
    code, out, err = _run(capsys, "batch", "submit", str(manifest))
    assert code == 0, err
    batch = out.strip()
    # the neighbour: a running batch is resumed
    code, _, err = _run(capsys, "batch", "submit", str(manifest))
    assert code == 0
    assert "already known (running), resumed" in err
    assert _run(capsys, "batch", "cancel", batch)[0] == 0
    code, _, err = _run(capsys, "batch", "submit", str(manifest))
    assert code == INVALID
    line = _one_line(err)
    assert f"batch {batch} of this manifest was cancelled and is not resumed" in line
    assert "), resumed" not in line


# ------------------------------------------------------------------ unknown ids


@pytest.mark.parametrize(
    "argv",
    [
        ("batch", "status", "b0000000000000000000a", "--once"),
        ("batch", "cancel", "b0000000000000000000a"),
        ("ledger", "show", "hksb7ba1b28130d24e015d69bcaf5c3a"),
        ("dlq", "show", "onboarding", "nope"),
        ("dlq", "purge", "webhook", "nope"),
    ],
    ids=" ".join,
)
def test_an_unknown_id_exits_2(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (INVALID, "")
    assert _one_line(err).startswith(f"idv-worker {argv[0]} {argv[1]}: ")


def test_erase_of_an_unknown_id_says_so(
    env: pytest.MonkeyPatch, s3_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_s3(env, s3_settings)
    code, out, err = _run(
        capsys, "erase", "--transaction", "hksnothinghere0000000000000000", "--by", "t"
    )
    assert code == INVALID
    assert not any(json.loads(out)[k] for k in ("s3_objects", "redis_keys", "ledger_entries"))
    assert _one_line(err) == (
        "idv-worker erase: found nothing to erase for hksnothinghere0000000000000000 "
        "(an audit entry says so)"
    )


# ------------------------------------------------------------------ ledger


def test_a_bad_date_has_no_line_number(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "archive", "run", "--before", "soon")
    assert code == INVALID
    assert _one_line(err) == (
        "idv-worker archive run: --before is neither epoch seconds nor ISO 8601"
    )


def test_a_bad_date_in_an_import_names_its_line(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "t.jsonl"
    rows.write_text(
        json.dumps({"transactionId": "hksb7ba1b28130d24e015d69bcaf5c3b", "productCode": "eKYC",
                    "merchantBizId": "m1", "completedAt": "soon"}) + "\n"
    )  # fmt: skip
    code, _, err = _run(capsys, "ledger", "import", str(rows))
    assert code == INVALID
    assert "line 1: completedAt is neither epoch seconds nor ISO 8601" in err


def test_ledger_show_names_the_lane(
    env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tid = "hksb7ba1b28130d24e015d69bcaf5c3c"
    rows = tmp_path / "t.jsonl"
    rows.write_text(
        json.dumps({"transactionId": tid, "productCode": "eKYC", "merchantBizId": "m1",
                    "completedAt": time.time()}) + "\n"
    )  # fmt: skip
    code, _, err = _run(capsys, "ledger", "import", str(rows))
    assert code == 0, err
    code, out, _ = _run(capsys, "ledger", "show", tid)
    assert code == 0
    assert "(lane realtime)" in out
    assert "(rt)" not in out
    code, out, _ = _run(capsys, "ledger", "show", tid, "--json")
    assert json.loads(out)["lane"] == "realtime"


# ------------------------------------------------------------------ dlq kinds


def test_dlq_help_names_the_kinds_the_flows_write(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.batch
    import tasks.ledger
    import worker.jobs.onboarding
    import worker.webhook
    from worker.jobs import DEAD_LETTER_KINDS

    written = {
        tasks.batch.KIND_CHUNK, tasks.batch.KIND_WATCHDOG, tasks.batch.KIND_FINALIZE,
        tasks.ledger.KIND_ARCHIVAL, tasks.ledger.KIND_SWEEP, worker.webhook.KIND_WEBHOOK,
        worker.jobs.onboarding.KIND_ONBOARDING, worker.jobs.onboarding.KIND_EVIDENCE,
    }  # fmt: skip
    assert written == set(DEAD_LETTER_KINDS)
    assert {"ledger-sweep", "batch-chunk", "batch-watchdog", "batch-finalize"} <= written
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps help at hyphens: one line for all
    dlq = build_parser()._subparsers._group_actions[0].choices["dlq"]  # type: ignore[union-attr]
    listing = dlq._subparsers._group_actions[0].choices["list"]
    text = listing.format_help().replace("\n", " ")
    assert all(kind in text for kind in DEAD_LETTER_KINDS)
    assert " tx," not in text


def test_dlq_list_refuses_a_kind_nobody_writes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dlq", "list", "--kind", "tx"])
    assert exited.value.code == INVALID
    assert "invalid choice: 'tx'" in capsys.readouterr().err


# ------------------------------------------------------------------ doctor


def test_every_doctor_fail_has_a_fix_and_nothing_is_logged_above_the_table() -> None:
    import os
    import subprocess
    import sys

    from worker.devtools import ROOT, free_port

    # Nothing answers: Redis, the provider, the S3 API (the probe's clean-up logs a warning).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDV_", "AWS_"))}
    env.update({
        "IDV_MODE": "development",
        "IDV_REDIS_URL": f"redis://:sekret@127.0.0.1:{free_port()}/0",
        "IDV_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "IDV_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "IDV_ACCESS_KEY_ID": "x", "IDV_ACCESS_KEY_SECRET": "x",
    })  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "worker", "doctor"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 1
    assert run.stderr == ""
    lines = run.stdout.splitlines()
    fails = [i for i, line in enumerate(lines) if line.startswith("FAIL")]
    assert len(fails) >= 5
    assert all(lines[i + 1].strip().startswith("fix: ") for i in fails)
    assert "sekret" not in run.stdout
    assert "Redis unreachable at redis://:***@127.0.0.1:" in run.stdout
