"""``idv-worker api ...`` against a canned provider on loopback."""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from PIL import Image

from worker.commands import api

IMAGE = base64.b64encode(b"\xff\xd8\xff" + b"\x01" * 300).decode()


class Canned(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.reply: tuple[int, dict[str, Any]] = (200, {})
        self.seen: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: Canned

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        self.server.seen.append(
            {
                "action": self.headers["x-acs-action"],
                "query": dict(parse_qsl(urlsplit(self.path).query)),
                "body": dict(parse_qsl(body.decode())),
            }
        )
        status, payload = self.server.reply
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json;charset=utf-8")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[Canned]:
    server = Canned()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("IDV_ENDPOINT", server.url)
    monkeypatch.setenv("IDV_ACCESS_KEY_ID", "ak")
    monkeypatch.setenv("IDV_ACCESS_KEY_SECRET", "sk")
    monkeypatch.setenv("IDV_ONBOARDING_PRODUCT", "FACE_LIVENESS")
    yield server
    server.shutdown()
    server.server_close()


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="idv-worker")
    api.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["api", *argv])
    code: int = args.handler(args)
    return code


def success(result: dict[str, Any]) -> dict[str, Any]:
    return {"RequestId": "RID", "Code": "Success", "Message": "success", "Result": result}


CHECK = ["check-result", "--transaction-id", "tx1", "--merchant-biz-id", "biz1"]


def test_check_result_prints_json_with_images_elided(
    provider: Canned, capsys: pytest.CaptureFixture[str]
) -> None:
    ext_face = json.dumps({"faceImg": IMAGE, "faceAttack": "N"})
    ext_id = json.dumps({"idImage": IMAGE, "ocrIdInfo": {"name": "Tai Man"}})
    provider.reply = (200, success({"Passed": "Y", "ExtFaceInfo": ext_face, "ExtIdInfo": ext_id}))
    assert run(*CHECK, "--return-image") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["Passed"] == "Y"
    assert out["ExtFaceInfo"]["faceImg"] == f"<elided: {len(IMAGE)} bytes>"
    assert out["ExtIdInfo"]["idImage"] == f"<elided: {len(IMAGE)} bytes>"
    assert out["ExtIdInfo"]["ocrIdInfo"]["name"] == "Tai Man"
    assert provider.seen[0]["query"] == {
        "TransactionId": "tx1",
        "MerchantBizId": "biz1",
        "IsReturnImage": "Y",
    }


def test_show_images(provider: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    provider.reply = (200, success({"ExtFaceInfo": json.dumps({"faceImg": IMAGE})}))
    assert run(*CHECK, "--show-images") == 0
    assert json.loads(capsys.readouterr().out)["ExtFaceInfo"]["faceImg"] == IMAGE


def test_provider_error_exit_1(provider: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    provider.reply = (
        404,
        {"RequestId": "R404", "Code": "ProcessNotCompleted", "Message": "not completed"},
    )
    assert run(*CHECK) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "idv-worker api check-result: ProcessNotCompleted: not completed (HTTP 404, request R404)"
    )


def test_validation_error_exit_2_names_the_flag(
    provider: Canned, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("check-result", "--transaction-id", "t", "--merchant-biz-id", "bad id!") == 2
    err = capsys.readouterr().err
    assert "--merchant-biz-id (MerchantBizId)" in err
    assert provider.seen == []


def test_doc_ocr_sends_file_as_base64(
    provider: Canned, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (1, 2, 3)).save(buf, "JPEG")
    image = tmp_path / "id.jpg"
    image.write_bytes(buf.getvalue())
    provider.reply = (200, success({"Passed": "Y", "TransactionId": "hk1", "SubCode": "200"}))
    argv = ["doc-ocr", "--image", str(image), "--doc-type", "00000006"]
    argv += ["--merchant-biz-id", "b1", "--merchant-user-id", "u1", "--spoof"]
    assert run(*argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["TransactionId"] == "hk1"
    (seen,) = provider.seen
    assert seen["action"] == "DocOcrV2"
    assert base64.b64decode(seen["body"]["IdOcrPictureBase64"]) == buf.getvalue()
    assert seen["query"]["Spoof"] == "T"


def test_doc_ocr_unreadable_file(provider: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["doc-ocr", "--image", "/nonexistent/x.jpg", "--doc-type", "00000006"]
    assert run(*argv, "--merchant-biz-id", "b1", "--merchant-user-id", "u1") == 2
    assert "--image" in capsys.readouterr().err
    assert provider.seen == []


def test_initialize(provider: Canned, capsys: pytest.CaptureFixture[str]) -> None:
    provider.reply = (200, success({"TransactionId": "t9", "TransactionUrl": "https://f"}))
    argv = ["initialize", "--product-code", "eKYC", "--merchant-biz-id", "b1"]
    argv += ["--merchant-user-id", "u1", "--callback-url", "https://cb/x", "--doc-type", "00000001"]
    assert run(*argv) == 0
    assert json.loads(capsys.readouterr().out)["TransactionId"] == "t9"
    assert provider.seen[0]["query"]["CallbackUrl"] == "https://cb/x"


def test_elide_images_is_recursive() -> None:
    data = {"a": [{"faceImg": "xyz"}], "idBackImage": "ab", "other": "keep"}
    assert api.elide_images(data) == {
        "a": [{"faceImg": "<elided: 3 bytes>"}],
        "idBackImage": "<elided: 2 bytes>",
        "other": "keep",
    }
    assert api.elide_images(data, show_images=True) is data
