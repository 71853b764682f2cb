"""``idv-worker emulator`` flags (windows, quotas, faults, timeouts) and ``emulator samples``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fixtures.emulator import EmulatorHandle, EmulatorServer, LoopbackHTTPServer

FLAGS = [
    "--link-validity",
    "60",
    "--fresh-link-window",
    "120",
    "--retention",
    "3600",
    "--quota",
    "eKYC=1",
    "--quota",
    "ID_OCR_MIN:DocOcrV2=7",
    "--fault",
    "error_503_rate=1",
    "--fault",
    "actions=Initialize",
    "--image-fetch-timeout",
    "0.3",
    "--callback-retries",
    "0",
    "--quota-algorithm",
    "token-bucket",
    "--quota-burst",
    "3",
]


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorHandle]:
    log = tmp_path_factory.mktemp("emulator-cli") / "emulator.log"
    server = EmulatorServer(log, FLAGS, via_cli=True).start()
    try:
        with httpx.Client(timeout=30) as client:
            yield EmulatorHandle(server, client)
    finally:
        server.stop()


def test_startup_line_and_flags(configured: EmulatorHandle) -> None:
    log = configured.server.log_path.read_text()
    assert f"listening on {configured.url}" in log
    quotas = configured.http.get(f"{configured.url}/_emulator/quotas").json()
    assert (quotas["eKYC"], quotas["ID_OCR_MIN:DocOcrV2"], quotas["ID_OCR"]) == (1, 7, 10)
    faults = configured.http.get(f"{configured.url}/_emulator/faults").json()
    assert (faults["error_503_rate"], faults["actions"]) == (1, ["Initialize"])
    policy = configured.http.get(f"{configured.url}/_emulator/quota-algorithm").json()
    assert policy == {"algorithm": "token-bucket", "burst": 3}
    query = {"ProductCode": "eKYC", "MerchantBizId": "b1", "MerchantUserId": "u1"}
    assert configured.call_api("Initialize", query, {}).status_code == 503


def test_configured_business_windows(configured: EmulatorHandle) -> None:
    tid = configured.create_transaction("FACE_LIVENESS")
    configured.complete(tid, video_size=100, callback=False)
    configured.set_clock(speed=0)
    query = {"MerchantBizId": "b1", "TransactionId": tid}

    def link() -> str | None:
        result = configured.call_api("CheckResult", query).json()["Result"]
        value: str | None = json.loads(result["ExtFaceInfo"]).get("docVideoUrl")
        return value

    first = link()
    assert first is not None
    expires = int(parse_qs(urlsplit(first).query)["Expires"][0])
    assert expires == int(configured.now() + 60)
    configured.advance(61)
    assert configured.http.get(first).status_code == 403
    configured.advance(60)
    assert link() is None
    configured.advance(3600)
    assert configured.call_api("CheckResult", query).json()["Code"] == "TransactionIdInvalid"


def test_image_download_timeout(
    configured: EmulatorHandle, loopback_http: LoopbackHTTPServer
) -> None:
    loopback_http.hold.add("/slow.jpg")
    query = {
        "ProductCode": "ID_OCR_MIN",
        "MerchantBizId": "b1",
        "MerchantUserId": "u1",
        "DocType": "00000006",
        "Ocr": "T",
        "IdOcrPictureUrl": loopback_http.url("/slow.jpg"),
    }
    response = configured.call_api("DocOcrV2", query, {})
    assert (response.status_code, response.json()["Code"]) == (401, "DownloadTimeout")


def test_samples_command(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "emulator",
            "samples",
            "--count",
            "30",
            "--bad",
            "5",
            "--doc-type",
            "00000001",
            "--seed",
            "4",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 35
    assert {r["doc_type"] for r in rows} == {"00000001"}
    assert all(Path(r["image"]).exists() for r in rows)
    assert (out / "manifest.csv").read_text().count("\n") == 36


@pytest.mark.parametrize(
    "flags",
    [
        ["--quota", "eKYC=0"],
        ["--quota-algorithm", "leaky-bucket"],
        ["--quota-algorithm", "token-bucket", "--quota-burst", "0.5"],
    ],
)
def test_bad_flags_exit_with_usage_error(flags: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "worker.emulator", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "quota" in done.stderr
