"""Edges of redaction the mutation tier found untested: each text form exactly as it comes
out (quotes kept, the key kept), every personal field of the models after ``=``, and every
word that makes a mapping key sensitive on its own."""

from __future__ import annotations

import logging

import pytest

from worker.observability.personal_fields import PERSONAL_FIELDS
from worker.observability.redaction import (
    REDACTED,
    RedactingFilter,
    redact_text,
    scrub,
    sensitive_key,
)

R = REDACTED


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "next=https%3A%2F%2Fh.example%2Fv%3Fsecurity-token%3DABC%26x%3D1 done",
            f"next=https%3A%2F%2Fh.example%2Fv%3F{R} done",
        ),
        ("IDV_ACCESS_KEY_SECRET=abc123 next", f"IDV_ACCESS_KEY_SECRET={R} next"),
        ("IDV_REDIS_PASSWORD='p w' next", f"IDV_REDIS_PASSWORD='{R}' next"),
        ('IDV_CALLBACK_TOKENS="a,b" x', f'IDV_CALLBACK_TOKENS="{R}" x'),
        ("Cookie: session=abc; x=y", f"Cookie: {R}"),
        ('set-cookie="s=1"', f'set-cookie="{R}"'),
        ("name=Zhang San, age=3", f"name={R}, age=3"),
        ("name='Zhang San'", f"name='{R}'"),
        ('{\\"name\\": \\"Zhang San\\"}', f'{{\\"name\\": \\"{R}\\"}}'),
        ('user name: "Zhang San"', f'user name: "{R}"'),
        ("", ""),
    ],
)
def test_each_text_form_exactly(text: str, expected: str) -> None:
    assert redact_text(text) == expected
    if "%3F" not in expected:  # an encoded query gains a second marker: nothing leaks
        assert redact_text(expected) == expected  # redacting twice changes nothing


@pytest.mark.parametrize("field", sorted(PERSONAL_FIELDS))
def test_every_personal_field_of_the_models_is_redacted_in_text(field: str) -> None:
    assert "MARKER42" not in redact_text(f"got {field}=MARKER42 then")


# One key per word that makes a key sensitive by itself (no other word of the lists in it,
# not a field of the models), so each word is needed.
WORD_KEYS = [
    "customer_secret", "customer_password", "customer_passwd", "customer_signature",
    "customer_token", "customer_authorization", "customer_cookie", "customer_credential",
    "customer_api_key", "customer_access_key", "customer_private_key",
    "customer_image", "customer_img", "customer_photo", "customer_picture", "customer_base64",
    "customer_video",
    "customer_facepic",
    "customer_idnumber", "customer_idno", "customer_certno", "customer_certnumber",
    "customer_documentnumber", "customer_passport", "customer_nationalid", "customer_birth",
    "customer_address", "customer_mobile", "customer_phone", "customer_email", "customer_ocr",
    "fullName", "firstName", "lastName", "surname", "givenName", "familyName", "middleName",
    "localName", "englishName", "certName", "userName", "dsn", "sig",
]  # fmt: skip


@pytest.mark.parametrize("key", WORD_KEYS)
def test_each_sensitive_word_redacts_a_key(key: str) -> None:
    assert sensitive_key(key)
    assert scrub({key: "v1", "customer_note": "kept"}) == {key: R, "customer_note": "kept"}


def test_keys_are_compared_without_case_spaces_dots_or_dashes() -> None:
    for key in ("Customer-Phone", "customer.phone", "customer phone", "CUSTOMER_PHONE"):
        assert sensitive_key(key), key
    assert not sensitive_key("customer_note")


SOFTWARE_PARENTS = [
    "sdk", "packages", "integrations", "runtime", "os", "device", "browser", "app", "trace",
    "threads", "mechanism", "modules", "culture", "cloud_resource", "otel",
]  # fmt: skip


@pytest.mark.parametrize("parent", SOFTWARE_PARENTS)
def test_a_name_under_a_software_part_of_an_event_is_kept(parent: str) -> None:
    event = {parent: {"name": "Zhang San", "inner": [{"name": "Li Si"}]}, "user": {"name": "W"}}
    assert scrub(event) == {
        parent: {"name": "Zhang San", "inner": [{"name": "Li Si"}]},
        "user": {"name": R},
    }


def test_name_alone_is_personal_unless_it_names_software() -> None:
    assert sensitive_key("name")
    assert not sensitive_key("name", software=True)
    assert sensitive_key("fullName", software=True)  # a person's name in any part


def _nested(depth: int, leaf: object, *, key: object = None) -> object:
    value = leaf
    for _ in range(depth):
        value = [value] if key is None else {key: value}
    return value


def test_scrub_stops_at_a_depth_of_twelve() -> None:
    assert scrub(_nested(12, "kept")) == _nested(12, "kept")
    assert scrub(_nested(13, "kept")) == _nested(13, R)
    assert scrub(_nested(12, "kept", key=7)) == _nested(12, "kept", key=7)
    assert scrub(_nested(13, "kept", key=7)) == _nested(13, R, key=7)
    assert scrub(_nested(6, "kept", key="k")) == _nested(6, "kept", key="k")
    assert scrub(_nested(13, "kept", key="k")) == _nested(13, R, key="k")
    assert scrub(("name=Zhang San", 3)) == [f"name={R}", 3]


def test_keys_that_are_not_text_keep_their_values_scrubbed() -> None:
    assert scrub({1: "name=Zhang San", (2, 3): {"phone": "123"}, None: None}) == {
        1: f"name={R}",
        (2, 3): {"phone": R},
        None: None,
    }


def test_empty_values_under_sensitive_keys_stay_as_they_are() -> None:
    assert scrub({"phone": "", "email": None, "token": R, "secret": "s"}) == {
        "phone": "",
        "email": None,
        "token": R,
        "secret": R,
    }


def test_the_filter_redacts_message_and_stack_and_tolerates_a_bad_format() -> None:
    record = logging.LogRecord(
        "idv.x", logging.INFO, __file__, 1, "called with %s", ("token=abc123",), None
    )
    record.stack_info = "Stack (most recent call last):\n  f(token=abc123)"
    assert RedactingFilter().filter(record)
    assert (record.msg, record.args) == (f"called with token={R}", None)
    assert record.stack_info == f"Stack (most recent call last):\n  f(token={R})"
    bad = logging.LogRecord("idv.x", logging.INFO, __file__, 1, "%d token=abc", ("x",), None)
    assert RedactingFilter().filter(bad)
    assert bad.msg == f"'%d token={R}' (unformattable args)"
