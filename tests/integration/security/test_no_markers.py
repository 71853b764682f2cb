"""Synthetic markers through the whole system: none may surface where it must not.

Markers are planted in the provider's OCR data (a name and an ID number, in a transaction's
CheckResult and in a batch image), in the keys and tokens (the AccessKey secret, the callback
token, the webhook secret) and in presigned links (the emulator's evidence links carry a
``Signature``; a manifest URL carries one). A real stack runs: the emulator, the receiver
(uvicorn), a Celery worker, Redis, S3, a webhook endpoint that refuses deliveries (so they end
in dead letters) and a Sentry endpoint. Then every log line (worker and receiver log files,
CLI output), every Sentry envelope, every Redis value (SCAN of every key, every type, chunk
blobs decompressed) and every metric line is searched. Goal: 0 markers.

Then the person is erased (``idv-worker erase --transaction`` and ``--merchant-user``): Redis
and S3 hold neither their ids nor their data any more, except the audit entry (keyed
pseudonyms only).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from tests.fixtures.e2e import E2EServers, E2EStack
from tests.fixtures.emulator import EmulatorHandle, EmulatorServer
from tests.fixtures.servers import free_port, wait_until
from tests.fixtures.workers import CeleryWorker
from tests.integration.security.scan import (
    Finding,
    SentrySink,
    find,
    redis_values,
    scan_redis,
    scan_s3,
)
from worker.devtools import Proc, spawn_emulator, spawn_receiver
from worker.emulator.doctypes import FACE_SIDE, derive_fields
from worker.emulator.imagecheck import embed_payload
from worker.emulator.render import render_card
from worker.keys import KIND_TX
from worker.stores import Pseudonyms

pytestmark = pytest.mark.slow

ACCESS_KEY_ID = "sec-access-key"
SECRET_MARKER = "QzSecretMarker7731"
TOKEN_MARKER = "QzTokenMarker4410"
WEBHOOK_MARKER = "QzWebhookMarker0922QzWebhookMark"  # base64 of a 24-byte key
NAME_MARKER = "Qzmarkername"
IDNO_MARKER = "Q8812346677"
BATCH_NAME_MARKER = "Qzbatchname"
URL_SIGNATURE_MARKER = "QzUrlSignature5521"
USER_MARKER = "qzuser-0042"
SECRETS = (SECRET_MARKER, TOKEN_MARKER, WEBHOOK_MARKER, URL_SIGNATURE_MARKER)
PERSONAL = (NAME_MARKER, IDNO_MARKER, BATCH_NAME_MARKER)
MARKERS = SECRETS + PERSONAL
PASSPORT = "00000001"


class MarkedEmulator(EmulatorServer):
    """The emulator with the marker AccessKey secret."""

    def start(self) -> MarkedEmulator:
        self.proc = spawn_emulator(
            self.port,
            f"{ACCESS_KEY_ID}:{SECRET_MARKER}",
            "--callback-retry-interval",
            "0.2",
            log=self.log_path,
            via_cli=False,
            timeout=20,
        )
        return self


class RefusingWebhook:
    """A webhook endpoint that refuses every delivery (400: the worker dead-letters it)."""

    def __init__(self) -> None:
        self.calls = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                hook.calls += 1
                self.send_response(400)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Run:
    stack: E2EStack
    emulator: EmulatorHandle
    sentry: SentrySink
    receiver_log: Path
    receiver_port: int
    transaction_id: str
    batch_id: str
    outputs: list[tuple[str, str]]
    export: str
    paused_batch: str = ""

    def cli(self, *args: str) -> str:
        done = self.stack.cli(*args, timeout=120)
        self.outputs.append((" ".join(args), done.stdout + done.stderr))
        assert done.returncode == 0, done.stderr
        return done.stdout


def _batch_manifest(folder: Path, item: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fields = derive_fields(PASSPORT, FACE_SIDE, b"marker")
    fields.update(name=f"{BATCH_NAME_MARKER} Zhang", passportNo=IDNO_MARKER)
    image = render_card(
        PASSPORT, FACE_SIDE, fields, "jpeg", embed_payload(PASSPORT, FACE_SIDE, fields, "200")
    )
    (folder / "marked.jpg").write_bytes(image)
    other = derive_fields(PASSPORT, FACE_SIDE, b"other")
    (folder / "other.jpg").write_bytes(
        render_card(
            PASSPORT, FACE_SIDE, other, "jpeg", embed_payload(PASSPORT, FACE_SIDE, other, "200")
        )
    )
    rows = [
        {"image": "marked.jpg", "doc_type": PASSPORT, "merchant_user_id": USER_MARKER}
        | ({"item_id": item} if item else {}),
        {"image": "other.jpg", "doc_type": PASSPORT, "merchant_user_id": "someone-else"},
        # Refused sources: outside the root, and a URL (not allowed) with a signature.
        {"image": "../../etc/passwd", "doc_type": PASSPORT},
        {
            "image": f"https://img.example/a.jpg?X-Amz-Signature={URL_SIGNATURE_MARKER}",
            "doc_type": PASSPORT,
        },
    ]
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="module")
def run(e2e_servers: E2EServers, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("security")
    emulator_server = MarkedEmulator(tmp / "emulator.log").start()
    sentry = SentrySink()
    dsn = sentry.start()
    webhook = RefusingWebhook()
    receiver_port = free_port()
    env = {
        "IDV_ENDPOINT": emulator_server.url,
        "IDV_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "IDV_ACCESS_KEY_SECRET": SECRET_MARKER,
        "IDV_CALLBACK_TOKENS": TOKEN_MARKER,
        "IDV_WEBHOOK_URL": webhook.url,
        "IDV_WEBHOOK_SECRET": "whsec_" + WEBHOOK_MARKER,
        "IDV_WEBHOOK_MAX_ATTEMPTS": "1",
        "IDV_SENTRY_DSN": dsn,
        "IDV_SENTRY_ENVIRONMENT": "security-suite",
        "IDV_LOG_LEVEL": "DEBUG",
        "IDV_LOG_FORMAT": "json",
        "IDV_QUOTAS": "eKYC=1000,ID_OCR_MIN=1000",
        "IDV_RECEIVER_READ_TIMEOUT_S": "1",
    }
    client = httpx.Client(timeout=30)
    procs: list[Proc] = []
    with e2e_servers.open(E2EStack, "security", **env) as stack:
        handle = EmulatorHandle(emulator_server, client)
        handle.access_key_id, handle.access_key_secret = ACCESS_KEY_ID, SECRET_MARKER
        worker: CeleryWorker | None = None
        try:
            worker = stack.worker("w1", concurrency=2)
            worker.wait_ready()
            receiver_log = stack.logdir / "receiver.log"
            procs.append(spawn_receiver(receiver_port, stack.env, receiver_log))
            receiver = f"http://127.0.0.1:{receiver_port}"
            tid = handle.create_transaction(
                "eKYC",
                "bizmarker0001",
                USER_MARKER,
                callback_url=f"{receiver}/callback",
                callback_token=TOKEN_MARKER,
                doc_type=PASSPORT,
            )
            handle.complete(tid, id_info={"name": NAME_MARKER, "passportNo": IDNO_MARKER})
            wait_until(
                lambda: stack.redis.exists(f"idv:result:{KIND_TX}:{tid}"), timeout=60, interval=0.2
            )
            # A probe with a wrong token (refused, logged) and webhooks ending as dead letters.
            bad = client.get(
                f"{receiver}/callback",
                params={"transactionId": tid, "passed": "Y", "subCode": "200",
                        "callbackToken": f"{TOKEN_MARKER}-guess"},
            )  # fmt: skip
            assert bad.status_code == 403
            # The event's dead letter is kept under tx:<tid>:<webhook-id> (erasure finds it).
            wait_until(
                lambda: any(stack.redis.scan_iter(f"idv:dlq:entry:webhook:tx:{tid}:*")), timeout=60
            )

            outputs: list[tuple[str, str]] = []
            r = Run(stack, handle, sentry, receiver_log, receiver_port, tid, "", outputs, "")
            manifest = _batch_manifest(tmp / "batch")
            r.batch_id = r.cli("batch", "submit", str(manifest)).strip().splitlines()[-1]

            def batch_done() -> bool:
                status = json.loads(r.stack.cli("batch", "status", r.batch_id, "--json").stdout)
                return bool(status["remaining"] == 0)

            wait_until(batch_done, timeout=90, interval=0.5)
            r.export = r.cli("batch", "export", r.batch_id, "--format", "jsonl")
            # The provider refuses the account: the next batch pauses and Sentry is told.
            handle.set_faults(forbidden_code="Forbidden.AccountAccessDenied", actions=["DocOcrV2"])
            second = _batch_manifest(tmp / "batch2", item="again")
            r.paused_batch = r.cli("batch", "submit", str(second)).strip().splitlines()[-1]

            def paused() -> bool:
                status = json.loads(r.stack.cli("batch", "status", r.paused_batch, "--json").stdout)
                return bool(status["state"] == "paused")

            wait_until(paused, timeout=60, interval=0.5)
            handle.set_faults(forbidden_code=None, actions=None)
            r.cli("metrics")
            r.cli("dlq", "list", "--json")
            r.cli("config")
            time.sleep(0.5)  # no condition to poll: let in-flight Sentry envelopes land
            yield r
        finally:
            for proc in procs:
                proc.stop(timeout=10)
            if worker is not None:
                worker.stop(timeout=20)
            webhook.stop()
            sentry.stop()
            client.close()
            emulator_server.stop()


def _logs(run: Run) -> list[Finding]:
    found: list[Finding] = []
    for path in sorted(run.stack.logdir.glob("*.log")):
        found += find("log", path.name, path.read_bytes(), MARKERS)
    for command, text in run.outputs:
        if command.startswith("batch export"):
            continue  # the export is the operator's copy of the OCR fields, on purpose
        found += find("cli", command, text, MARKERS)
    return found


def test_a_half_sent_request_is_closed_after_the_read_timeout(run: Run) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", run.receiver_port), timeout=10) as conn:
        conn.sendall(b"GET /callback?transactionId=x HTTP/1.1\r\nHost: r\r\nX-Slow: ")
        started = time.monotonic()
        assert conn.recv(1024) == b""  # closed by the receiver, no answer
        assert time.monotonic() - started < 5


def _report(found: list[Finding]) -> str:
    return "\n".join(f"{f.place} {f.where}: {f.marker} in {f.context!r}" for f in found)


def test_the_run_did_what_it_should(run: Run) -> None:
    exported = [json.loads(line) for line in run.export.splitlines()]
    done = [row for row in exported if row["status"] == "done"]
    assert len(done) == 2
    # The OCR fields come back from the encrypted S3 documents.
    assert BATCH_NAME_MARKER in json.dumps(done[0]["ext_id_info"])
    refused = {row["code"] for row in exported if row["status"] == "invalid"}
    assert refused == {"SourceOutsideRoot", "SourceNotAllowed"}
    assert URL_SIGNATURE_MARKER not in json.dumps(exported)
    assert run.sentry.envelopes, "nothing reached Sentry: the scan would prove nothing"
    assert any(key.startswith("idv:dlq:entry:webhook:") for key, _ in redis_values(run.stack.redis))


def test_no_marker_in_logs_sentry_redis_or_metrics(run: Run) -> None:
    found = _logs(run)
    for n, envelope in enumerate(run.sentry.envelopes):
        found += find("sentry", f"envelope {n}", envelope, MARKERS)
    # The manifest's merchant user id is kept (and sent) only as its keyed pseudonym.
    found += scan_redis(run.stack.redis, (*MARKERS, USER_MARKER))
    assert found == [], "\n".join(
        f"{f.place} {f.where}: {f.marker} in {f.context!r}" for f in found
    )


def test_erasure_leaves_nothing_of_the_person(run: Run) -> None:
    tid = run.transaction_id
    person = (tid, USER_MARKER, NAME_MARKER, IDNO_MARKER, BATCH_NAME_MARKER)
    before = scan_redis(run.stack.redis, person) + scan_s3(run.stack.store, person)
    assert {f.marker for f in before} >= {tid}  # the user id is kept only as its pseudonym

    tx = json.loads(run.cli("erase", "--transaction", tid, "--by", "dpo"))
    assert tx["s3_objects"] >= 2  # result document and evidence
    assert tx["dead_letters"] >= 1
    user = json.loads(run.cli("erase", "--merchant-user", USER_MARKER, "--by", "dpo"))
    assert user["batch_rows"] == 2  # the finished batch's row and the paused batch's row

    audit = "idv:audit"
    after = scan_redis(run.stack.redis, person, skip=audit) + scan_s3(run.stack.store, person)
    assert after == [], "\n".join(
        f"{f.place} {f.where}: {f.marker} in {f.context!r}" for f in after
    )
    entries = run.stack.redis.xrange(audit)
    assert len(entries) == 2
    text = repr(entries)
    for marker in person:
        assert marker not in text
    pseudonyms = Pseudonyms.from_settings(run.stack.settings.subjects)
    assert pseudonyms.transaction(tid) in text
    assert pseudonyms.merchant_user(USER_MARKER) in text

    # The other row of the batch is untouched; the erased one is reported without data.
    rows = [json.loads(line) for line in run.cli("batch", "export", run.batch_id).splitlines()]
    assert rows[1]["status"] == "done"
    assert rows[1]["ext_id_info"]
    assert "ext_id_info" not in rows[0]
    assert rows[0]["source"] == "erased:"
