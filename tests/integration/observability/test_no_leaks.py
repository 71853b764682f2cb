"""A presigned link or a signed RPC request goes through httpx, our logs and Sentry: its
signature, key id and token appear in no log line and no Sentry event or breadcrumb."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from worker.observability import configure_logging, get_logger, init_sentry, report_to_sentry
from worker.observability.sentry import release
from worker.settings import load_settings

MARKERS = ("SECRETMARKER", "AKIDMARKER", "TOKENMARKER", "Zhang")


class CapturingTransport(Transport):
    """Keeps every envelope the SDK would send."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def events(self) -> list[dict[str, Any]]:
        return [
            item.payload.json
            for envelope in self.envelopes
            for item in envelope.items
            if item.type == "event" and item.payload.json is not None
        ]

    def raw(self) -> str:
        return "".join(envelope.serialize().decode() for envelope in self.envelopes)


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        status = 500 if self.path.startswith("/fail") else 200
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def sentry() -> Iterator[CapturingTransport]:
    transport = CapturingTransport()
    settings = load_settings(
        sentry_dsn=SecretStr("https://public@127.0.0.1:9/1"), sentry_environment="leak-test"
    )
    assert init_sentry(settings.observability, transport=transport)
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_signed_urls_leak_into_no_log_line_and_no_sentry_event(
    origin: str, sentry: CapturingTransport
) -> None:
    logs = io.StringIO()
    configure_logging("DEBUG", "json", stream=logs)
    log = get_logger("evidence")
    presigned = f"{origin}/v.mp4?Expires=9&OSSAccessKeyId=AKIDMARKER&Signature=SECRETMARKER"
    rpc = (
        f"{origin}/?Action=CheckResult&AccessKeyId=AKIDMARKER&Signature=SECRETMARKER"
        "&SecurityToken=TOKENMARKER&SignatureNonce=n1"
    )
    with httpx.Client() as client:
        client.get(presigned)
        client.post(rpc, content=b"CertName=Zhang+San&CertNo=1101")
        client.get(f"{origin}/fail?Signature=SECRETMARKER")
    log.info("downloaded %s", presigned)
    log.warning("calling %s with name=Zhang San", rpc)
    log.error("evidence failed: %s", presigned)  # an event, with the breadcrumbs so far
    try:
        raise RuntimeError(f"provider answered 500 for {rpc}")
    except RuntimeError:
        sentry_sdk.capture_exception()
    report_to_sentry(f"lost {presigned}", flow="onboarding")
    sentry_sdk.flush()

    lines = logs.getvalue().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["msg"] == f"downloaded {origin}/v.mp4?<redacted>"
    events = sentry.events()
    assert len(events) == 3
    crumbs = [c for e in events for c in e["breadcrumbs"]["values"] if c.get("type") == "http"]
    assert {c["data"]["url"] for c in crumbs} == {f"{origin}/v.mp4", f"{origin}/", f"{origin}/fail"}
    assert all("http.query" not in c["data"] for c in crumbs)
    assert {e["environment"] for e in events} == {"leak-test"}
    assert {e["release"] for e in events} == {release()}
    for marker in MARKERS:
        assert marker not in logs.getvalue(), marker
        assert marker not in sentry.raw(), marker
