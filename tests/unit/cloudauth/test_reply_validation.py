"""Provider replies are checked against the models before they become records: a malformed
success names its field; size and JSON depth are bounded (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.unit.cloudauth.test_client import Script, check, make_client
from worker.cloudauth.errors import MalformedResponse
from worker.cloudauth.models import CheckResultResult, DocOcrResult
from worker.cloudauth.shapes import json_depth_exceeds, problem


def success(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"RequestId": "R", "Code": "Success", "Result": result})


def refused(reply: httpx.Response, **settings: Any) -> MalformedResponse:
    script = Script(reply)
    client = make_client(script, max_attempts=1, **settings)
    with client, pytest.raises(MalformedResponse) as info:
        check(client)
    return info.value


@pytest.mark.parametrize(
    ("result", "field"),
    [
        (None, "Result"),
        ("not json", "Result"),
        ([1, 2], "Result"),
        ({"Passed": "maybe"}, "Result.Passed"),
        ({"Passed": "passed"}, "Result.Passed"),
        ({"Passed": {"v": "Y"}}, "Result.Passed"),
        ({"Passed": "Y", "SubCode": ["200"]}, "Result.SubCode"),
        ({"Passed": "Y", "ExtIdInfo": 5}, "Result.ExtIdInfo"),
        ({"Passed": "Y", "ExtFaceInfo": [{"faceAttack": "N"}]}, "Result.ExtFaceInfo"),
        ({"Passed": "Y", "ExtFaceInfo": '{"faceAttack":"maybe"}'}, "Result.ExtFaceInfo.faceAttack"),
        (
            {"Passed": "Y", "ExtFaceInfo": {"faceAttackScore": "high"}},
            "Result.ExtFaceInfo.faceAttackScore",
        ),
        (
            {"Passed": "Y", "ExtIdInfo": {"spoofInfo": {"spoofResult": "X"}}},
            "Result.ExtIdInfo.spoofInfo.spoofResult",
        ),
        (
            {"Passed": "N", "ExtIdInfo": {"ocrIdInfo": {"name": {"first": "x"}}}},
            "Result.ExtIdInfo.ocrIdInfo.name",
        ),
    ],
)
def test_a_malformed_success_names_the_field(result: Any, field: str) -> None:
    body: dict[str, Any] = {"RequestId": "R", "Code": "Success"}
    if result is not None:
        body["Result"] = result
    error = refused(httpx.Response(200, json=body))
    assert error.field == field
    assert error.code == "MalformedResponse"
    assert field in str(error)
    assert error.retryable  # CheckResult: idempotent


def test_the_field_is_named_but_never_its_value() -> None:
    error = refused(success({"Passed": "SECRET-VALUE"}))
    assert "SECRET-VALUE" not in str(error)
    assert "SECRET-VALUE" not in json.dumps(error.to_dict())


@pytest.mark.parametrize(
    "result",
    [
        {"Passed": "Y", "SubCode": 200},
        {"Passed": True},
        {"Passed": "N", "ExtIdInfo": "", "ExtFaceInfo": "not json"},  # tolerated, stays in raw
        {"Passed": "Y", "ExtFaceInfo": {"faceAttackScore": "0.3", "faceAge": 31}},
        {"Passed": "Y", "NewField": {"anything": [1]}},
        '{"Passed":"Y"}',
    ],
)
def test_lenient_but_sound_replies_still_parse(result: Any) -> None:
    with make_client(Script(success(result))) as client:
        assert check(client).passed in ("Y", "N")


def test_shape_of_doc_ocr_results() -> None:
    assert problem(DocOcrResult, {"TransactionId": "t", "Passed": "Y", "SubCode": "200"}) is None
    assert problem(DocOcrResult, {"TransactionId": {"x": 1}}) == (
        "Result.TransactionId",
        "expected a string, got dict",
    )


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def test_a_100k_deep_reply_is_malformed_not_a_recursion_error() -> None:
    error = refused(httpx.Response(200, content=deep(100_000)))
    assert error.field == "body"
    assert "deeper" in error.message


def test_a_reply_deeper_than_the_bound_is_malformed() -> None:
    nested: Any = "x"
    for _ in range(100):
        nested = {"k": nested}
    error = refused(success({"Passed": "Y", "ExtInfo": nested}))
    assert error.field == "body"
    script = Script(success({"Passed": "Y", "ExtInfo": nested}))
    with make_client(script, max_response_depth=200) as client:
        assert check(client).ext_info == nested


def test_a_deep_ext_string_is_malformed() -> None:
    text = deep(5000).decode()
    error = refused(success({"Passed": "Y", "ExtRiskInfo": text}))
    assert error.field == "Result.ExtRiskInfo"
    assert not CheckResultResult.from_body({"Result": {"ExtRiskInfo": text}}).ext_risk_info


def test_depth_helper_is_iterative() -> None:
    value: Any = []
    for _ in range(50_000):
        value = [value]
    assert json_depth_exceeds(value, 64)
    assert not json_depth_exceeds([[1]], 2)
    assert json_depth_exceeds([[[1]]], 2)


class Endless(httpx.SyncByteStream):
    """A reply body that never ends; counts what was read."""

    def __init__(self) -> None:
        self.read = 0

    def __iter__(self) -> Iterator[bytes]:
        chunk = b" " * 65536
        while True:
            self.read += len(chunk)
            yield chunk


def test_an_oversized_reply_is_refused_without_reading_it_all() -> None:
    stream = Endless()
    error = refused(httpx.Response(200, stream=stream), max_response_bytes=1024 * 1024)
    assert error.field == "body"
    assert stream.read <= 1024 * 1024 + 65536


def test_a_declared_oversized_reply_is_refused_before_reading() -> None:
    stream = Endless()
    reply = httpx.Response(200, stream=stream, headers={"content-length": str(64 * 1024 * 1024)})
    error = refused(reply, max_response_bytes=1024 * 1024)
    assert "larger than" in error.message
    assert stream.read == 0


def test_a_reply_just_under_the_bound_is_read() -> None:
    padding = "x" * (512 * 1024)
    reply = success({"Passed": "Y", "ExtInfo": json.dumps({"pad": padding})})
    with make_client(Script(reply), max_response_bytes=1024 * 1024) as client:
        assert check(client).passed == "Y"
