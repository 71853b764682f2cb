"""Progress rendering, CSV flattening, the claiming transport and the CLI's wiring."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from worker.batch import (
    CSV_COLUMNS,
    BatchState,
    ClaimingTransport,
    ClaimRefused,
    ItemStatus,
    Progress,
    claiming,
    flatten,
    follow,
    format_duration,
    public_source,
    render_block,
    render_line,
    write_csv,
)
from worker.cli import build_parser


def _progress(**over: object) -> Progress:
    values: dict[str, object] = {
        "batch_id": "b1",
        "state": BatchState.RUNNING,
        "submitted": True,
        "total": 1000,
        "counts": {ItemStatus.DONE: 400, ItemStatus.INVALID: 50, ItemStatus.UNCERTAIN: 1},
        "rate": 9.5,
        "quota": 10.0,
    }
    values.update(over)
    return Progress(**values)  # type: ignore[arg-type]


def test_eta_comes_from_the_quota_and_the_rate() -> None:
    p = _progress()
    assert p.remaining == 549
    assert p.eta_s == pytest.approx(54.9)
    assert p.eta_observed_s == pytest.approx(549 / 9.5)
    assert _progress(state=BatchState.PAUSED).eta_s is None
    assert _progress(rate=0.0).eta_observed_s is None
    doc = p.as_dict()
    assert doc["remaining"] == 549
    assert doc["uncertain"] == 1
    json.dumps(doc)


def test_rendering() -> None:
    line = render_line(_progress())
    assert "45.1%" in line
    assert "uncertain 1" in line
    assert "ETA 58s (quota 10/s)" in line
    block = render_block(_progress(pause_reason=None, results_key="batches/b1/results.jsonl"))
    assert "remaining  549" in block
    assert "retry-failed --include-uncertain" in block
    assert format_duration(3725) == "1h02m"
    assert format_duration(None) == "-"


def test_follow_stops_when_the_batch_does() -> None:
    states = iter([_progress(), _progress(), _progress(state=BatchState.COMPLETED)])
    out = io.StringIO()
    final = follow(lambda: next(states), out, tty=False, sleep=lambda _s: None)
    assert final.state is BatchState.COMPLETED
    assert out.getvalue().count("\n") == 2  # an unchanged line is not repeated


def test_flatten_spreads_ocr_fields() -> None:
    row = {
        "row": 3,
        "line": 4,
        "status": "done",
        "passed": "Y",
        "ext_id_info": {
            "ocrIdInfo": {"name": "A", "idNumber": "X1", "newField": "?"},
            "ocrIdBackInfo": {"expireDate": "2030"},
            "spoofInfo": {"spoofResult": "N", "spoofType": ["SCREEN_REMARK", "TAMPER"]},
            "idFaceQualityScore": 97.5,
        },
    }
    cells = flatten(row)
    assert cells["ocr_name"] == "A"
    assert cells["ocr_id_number"] == "X1"
    assert cells["ocr_back_expire_date"] == "2030"
    assert cells["spoof_type"] == "SCREEN_REMARK;TAMPER"
    assert cells["id_face_quality_score"] == "97.5"
    assert json.loads(cells["ocr_extra"]) == {"ocrIdInfo": {"newField": "?"}}
    assert set(cells) <= set(CSV_COLUMNS)
    out = io.StringIO()
    assert write_csv([row], out) == 1
    assert out.getvalue().splitlines()[0].startswith("row,line,item_id,status")


def test_flatten_writes_the_sub_code_catalogue_columns() -> None:
    row = {"row": 1, "status": "done", "sub_code": "201", "sub_code_known": False,
           "sub_code_category": "unknown", "next_step": "manual_review"}  # fmt: skip
    cells = flatten(row)
    assert cells["sub_code_known"] == "false"
    assert cells["sub_code_category"] == "unknown"
    assert cells["next_step"] == "manual_review"
    assert "sub_code_billed" not in cells  # unknown billing stays an empty cell


def test_public_source_drops_presigned_queries() -> None:
    assert public_source("https://h/a.jpg?X-Amz-Signature=s#f") == "https://h/a.jpg"
    assert public_source("s3://b/k.jpg") == "s3://b/k.jpg"
    assert public_source("/data/a.jpg") == "/data/a.jpg"


def _doc_ocr(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def test_claiming_transport_claims_only_doc_ocr_requests() -> None:
    verdicts: list[str] = []
    transport = ClaimingTransport(httpx.MockTransport(_doc_ocr))
    client = httpx.Client(transport=transport)

    def claim() -> str:
        verdicts.append("asked")
        return "ok" if len(verdicts) == 1 else "state:paused"

    with claiming(claim):
        client.post("http://p/", headers={"x-acs-action": "CheckResult"})
        assert verdicts == []
        client.post("http://p/", headers={"x-acs-action": "DocOcrV2"})
        assert verdicts == ["asked"]
        with pytest.raises(ClaimRefused) as caught:
            client.post("http://p/?Action=DocOcrV2")  # RPC style
        assert caught.value.batch_stopped
    client.post("http://p/", headers={"x-acs-action": "DocOcrV2"})  # no claim outside
    assert len(verdicts) == 2


def test_cli_registers_every_batch_command() -> None:
    parser = build_parser()
    for argv in (
        ["batch", "submit", "m.csv", "--doc-type", "01000000"],
        ["batch", "status", "b1", "--once"],
        ["batch", "list"],
        ["batch", "errors", "b1"],
        ["batch", "export", "b1", "--format", "csv", "--only", "invalid,failed"],
        ["batch", "pause", "b1"],
        ["batch", "resume", "b1", "--force"],
        ["batch", "cancel", "b1"],
        ["batch", "retry-failed", "b1", "--include-uncertain"],
    ):
        args = parser.parse_args(argv)
        assert callable(args.handler)
