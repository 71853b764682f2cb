"""Edges of request signing the mutation tier found untested: the encoders' exact output,
timestamps and nonces, the canonical request's defaults, and every malformed Authorization
header the verifier must refuse (the emulator checks the worker's signatures with it)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from worker.cloudauth.signing import (
    Acs3Authorization,
    acs3_authorization,
    acs3_canonical_request,
    constant_time_equal,
    new_nonce,
    parse_acs3_authorization,
    percent_encode,
    rpc_string_to_sign,
    utc_timestamp,
)


def test_percent_encoding_keeps_only_the_unreserved_characters() -> None:
    assert percent_encode("aZ09-_.~ */+=&") == "aZ09-_.~%20%2A%2F%2B%3D%26"


def test_timestamps_are_utc_to_the_second() -> None:
    local = datetime(2024, 1, 2, 11, 4, 5, 999_000, tzinfo=timezone(timedelta(hours=8)))
    assert utc_timestamp(local) == "2024-01-02T03:04:05Z"
    before = datetime.now(UTC).replace(microsecond=0)
    now = datetime.strptime(utc_timestamp(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= now <= datetime.now(UTC)


def test_nonces_are_32_lowercase_hex_characters_and_differ() -> None:
    nonces = {new_nonce() for _ in range(50)}
    assert len(nonces) == 50
    assert all(re.fullmatch(r"[0-9a-f]{32}", n) for n in nonces)


def test_the_canonical_request_upper_cases_the_method_and_defaults_the_path() -> None:
    text = acs3_canonical_request(
        "post", "", [("b", "2"), ("a", "1")], {"Host": "h"}, ["host"], "x"
    )
    assert text == "POST\n/\na=1&b=2\nhost:h\n\nhost\nx"


def test_the_rpc_string_leaves_the_signature_out() -> None:
    with_sig = rpc_string_to_sign("get", [("A", "1"), ("Signature", "zzz")])
    assert with_sig == rpc_string_to_sign("GET", [("A", "1")]) == "GET&%2F&A%3D1"


def test_an_authorization_header_parses_back() -> None:
    header = acs3_authorization("AK1", "host;x-acs-date", "abc123")
    assert (
        header == "ACS3-HMAC-SHA256 Credential=AK1,SignedHeaders=host;x-acs-date,Signature=abc123"
    )
    expected = Acs3Authorization("AK1", ("host", "x-acs-date"), "abc123")
    assert parse_acs3_authorization(header) == expected
    spaced = " ACS3-HMAC-SHA256 Credential=AK1, SignedHeaders=host;x-acs-date;, Signature=abc123 "
    assert parse_acs3_authorization(spaced) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "ACS3-HMAC-SHA256",
        "ACS3-HMAC-SHA256 ",
        "ACS3-HMAC-SHA1 Credential=AK1,SignedHeaders=host,Signature=abc",
        "HMAC-SHA256 Credential=AK1,SignedHeaders=host,Signature=abc",
        "ACS3-HMAC-SHA256 Credential=AK1,SignedHeaders=host,Signature",
        "ACS3-HMAC-SHA256 Credential=AK1,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=AK1,Signature=abc",
        "ACS3-HMAC-SHA256 SignedHeaders=host,Signature=abc",
        "ACS3-HMAC-SHA256 Credential=AK1;SignedHeaders=host;Signature=abc",
        "ACS3-HMAC-SHA256 Credential=AK1,SignedHeaders=host,Signature=abc,junk",
    ],
)
def test_a_malformed_authorization_header_is_refused(header: str) -> None:
    assert parse_acs3_authorization(header) is None


def test_constant_time_equal_compares() -> None:
    assert constant_time_equal("abc", "abc")
    assert not constant_time_equal("abc", "abd")
    assert not constant_time_equal("abc", "ab")
