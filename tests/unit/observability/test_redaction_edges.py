"""Edges of redaction the mutation tier found untested: each text form exactly as it comes
out (quotes kept, the key kept), every personal field of the models after ``=``, and every
word that makes a mapping key sensitive on its own."""

from __future__ import annotations

import pytest

from worker.observability.personal_fields import PERSONAL_FIELDS
from worker.observability.redaction import REDACTED, redact_text, scrub, sensitive_key

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
    "customer_img", "customer_photo", "customer_picture", "customer_base64", "customer_video",
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
