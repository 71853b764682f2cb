"""Redaction of secrets, links and personal data from free text and from structures.

Used by every log handler (``RedactingFilter``), by Sentry's ``before_send`` and
``before_breadcrumb``, and by anything that must show a value it did not build itself.

* URLs lose their query string (presigned links: ``?Expires=…&Signature=…``), also written
  JSON-escaped (``https:\\/\\/h\\/v?a=1\\u0026security-token=…``) or percent-encoded
  (``https%3A%2F%2Fh%2Fv%3Fsecurity-token%3D…``), and any password
  (``scheme://user:<redacted>@host``).
* ``key=value`` / ``"key": "value"`` pairs (also ``key%3Dvalue`` and JSON-escaped quotes)
  whose key is a secret (``AccessKeySecret``, ``Signature``, ``SecurityToken``,
  ``security-token``, ``x-oss-security-token``, ``X-Amz-Credential``, ``callbackToken``,
  ``Cookie``, any ``…_SECRET=``/``…_PASSWORD=``/``…_TOKEN=`` variable, …) or personal data
  lose their value. The personal keys are every field the models mark as personal
  (``personal_fields.PERSONAL_FIELDS``, generated from the models) plus a few generic ones
  (phone, email, full names).
* In mappings, values under such keys are replaced whole; ``name`` is personal only where it is
  not the name of a piece of software (``sdk.name``, ``contexts.runtime.name``) nor a dotted
  identifier (``idv.onboarding.process``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from worker.observability.personal_fields import PERSONAL_FIELDS

REDACTED = "<redacted>"

_URL_QUERY = re.compile(
    r"""\b([a-z][a-z0-9+.\-]*:(?://|\\/\\/)[^\s?#"'<>]+)\?[^\s#"'<>]*""", re.IGNORECASE
)
# a URL inside another one's query, or logged as a parameter: ``https%3A%2F%2F…%3F…``
_ENCODED_URL_QUERY = re.compile(
    r"""\b([a-z][a-z0-9+.\-]*%3A%2F%2F(?:(?!%3F)[^\s?#"'<>&])+)%3F[^\s#"'<>&]*""", re.IGNORECASE
)
_URL_PASSWORD = re.compile(r"""\b([a-z][a-z0-9+.\-]*://[^\s:/@"'<>]*):[^\s@/"'<>]+@""", re.I)
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)

# names of secrets, not secrets
_SECRET_KEYS = (
    r"AccessKeySecret|AccessKeyId|OSSAccessKeyId|Signature|SignatureNonce|SecurityToken|"  # noqa: S105
    r"X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|X-Acs-Security-Token|Credential|"
    r"x-oss-security-token|x-oss-signature|x-oss-credential|security-token|security_token|"
    r"callbackToken|callback_token|token|password|passwd|secret|api[_\-]?key|authorization"
)
# ``IDV_ACCESS_KEY_SECRET=…``, ``IDV_REDIS_PASSWORD=…``, ``IDV_CALLBACK_TOKENS=a,b``: the whole
# value up to a space or quote (lists of tokens included).
_VARIABLE = re.compile(
    r"""(?<![\w.\-])([A-Za-z][A-Za-z0-9_]*_(?:SECRETS?|PASSWORD|PASSWD|TOKENS?|API_?KEY|"""
    r"""ACCESS_KEY_ID|DSN|CREDENTIALS?)\s*=\s*)("[^"]*"|'[^']*'|[^\s"']+)""",
    re.IGNORECASE,
)
_COOKIE = re.compile(
    r"""(?<![\w.\-])(["']?(?:set-)?cookie["']?\s*[=:]\s*)("[^"]*"|'[^']*'|[^\r\n"']+)""",
    re.IGNORECASE,
)
# values that may hold spaces (names, addresses) and values that are one token (numbers, dates)
_PERSONAL_WORDS = (
    r"name|fullName|full_name|firstName|first_name|lastName|last_name|surname|givenName|"
    r"familyName|middleName|localName|englishName|address|"
    + "|".join(re.escape(f) for f in sorted(PERSONAL_FIELDS, key=len, reverse=True))
)
_PERSONAL_TOKENS = (
    r"idNumber|id_number|idNo|certNo|certNumber|certificateNumber|documentNumber|docNumber|"
    r"passportNo|passportNumber|nationalId|birthDate|birth_date|dateOfBirth|date_of_birth|dob|"
    r"mobile|phone|phoneNumber|email"
)
# ``key=value``, ``key: value``, ``"key": "value"``, JSON-escaped ``\\"key\\": \\"value\\"``,
# percent-encoded ``key%3Dvalue``; the key is not part of a longer name (``server_name``,
# ``sdk.name``, ``filename`` are left alone) unless it follows an encoded ``&`` or ``?``.
_PAIR = (
    r"""(?:(?<=%26)|(?<=%3F)|(?<=%3f)|(?<=\\u0026)|(?<![\w.\-]))"""
    r"""(\\?["']?(?:{keys})\\?["']?\s*(?:[=:]|%3D|\\u003d)\s*)"""
    r"""(\\"(?:[^"\\]|\\[^"])*\\"|"[^"]*"|'[^']*'|{value})"""
)
# one token: up to a delimiter, an encoded ``&`` (``%26``, ``\\u0026``); ``\\/`` is part of it
_ONE_VALUE = r"""(?:\\/|(?!%26|\\u0026)[^\s&,;"'<>)}\]\\])+"""
_SECRET_PAIR = re.compile(
    _PAIR.format(keys=f"{_SECRET_KEYS}|{_PERSONAL_TOKENS}", value=_ONE_VALUE), re.IGNORECASE
)
_PERSONAL_PAIR = re.compile(
    _PAIR.format(
        keys=_PERSONAL_WORDS,
        # unquoted: up to the next ``key=``, a delimiter or the end (names have spaces)
        value=r"""[^,;&}\]\n"']+?(?=\s+[\w.\-]+\s*[=:]|[,;&}\]\n"']|$)""",
    ),
    re.IGNORECASE,
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][\w\-]*(?:[.:][\w\-]+)+$")


def _replace(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = '\\"' if value.startswith('\\"') else value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{quote}{REDACTED}{quote}"


def _personal_pair(match: re.Match[str]) -> str:
    value = match.group(2).strip("\\\"'")
    if not value or value.startswith(REDACTED) or _IDENTIFIER.match(value):
        return match.group(0)
    return _replace(match)


def redact_text(text: str) -> str:
    """``text`` without URL query strings, URL passwords, secrets or personal data after keys."""
    if not text:
        return text
    text = _URL_QUERY.sub(r"\1?" + REDACTED, text)
    text = _ENCODED_URL_QUERY.sub(r"\1%3F" + REDACTED, text)
    text = _URL_PASSWORD.sub(r"\1:" + REDACTED + "@", text)
    text = _BEARER.sub(r"\1 " + REDACTED, text)
    text = _VARIABLE.sub(_replace, text)
    text = _COOKIE.sub(_replace, text)
    text = _SECRET_PAIR.sub(_replace, text)
    return _PERSONAL_PAIR.sub(_personal_pair, text)


def _norm(key: str) -> str:
    return re.sub(r"[\s_.\-]", "", key.lower())


_SECRET_PARTS = (
    "secret", "password", "passwd", "signature", "token", "authorization", "cookie",
    "credential", "apikey", "accesskey", "privatekey",
)  # fmt: skip
_MEDIA_PARTS = ("image", "img", "photo", "picture", "base64", "video", "facepic")
_PERSONAL_PARTS = (
    "idnumber", "idno", "certno", "certnumber", "documentnumber", "passport", "nationalid",
    "birth", "address", "mobile", "phone", "email", "ocr",
)  # fmt: skip
_PERSON_NAMES = frozenset(
    {
        "fullname", "firstname", "lastname", "surname", "givenname", "familyname",
        "middlename", "localname", "englishname", "certname", "username",
    }
)  # fmt: skip
# Where ``name`` names software, not a person (Sentry's own event structure).
_SOFTWARE_PARENTS = frozenset(
    {
        "sdk", "packages", "integrations", "runtime", "os", "device", "browser", "app",
        "trace", "threads", "mechanism", "modules", "culture", "cloudresource", "otel",
    }
)  # fmt: skip


# Every field a model marks as personal, normalised (``surnameCN`` -> ``surnamecn``); ``name``
# is decided below (it also names software).
_PERSONAL_FIELD_NORMS = frozenset(_norm(f) for f in PERSONAL_FIELDS) - {"name"}


def sensitive_key(key: str, *, software: bool = False) -> bool:
    """Whether a mapping key holds a secret, an image/video, or personal data."""
    norm = _norm(key)
    if norm in {"dsn", "sig"} or norm in _PERSON_NAMES or norm in _PERSONAL_FIELD_NORMS:
        return True
    if norm == "name":
        return not software
    return any(p in norm for p in (*_SECRET_PARTS, *_MEDIA_PARTS, *_PERSONAL_PARTS))


def scrub(value: Any, depth: int = 0, *, _software: bool = False) -> Any:
    """A copy of ``value`` with sensitive keys replaced and every string passed through
    ``redact_text`` (mappings, lists and tuples are walked)."""
    if depth > 12:
        return REDACTED
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, val in value.items():
            if not isinstance(key, str):
                out[key] = scrub(val, depth + 1, _software=_software)
                continue
            software = _software or _norm(key) in _SOFTWARE_PARENTS
            keep_name = _software or (isinstance(val, str) and bool(_IDENTIFIER.match(val)))
            if sensitive_key(key, software=keep_name) and val not in (None, "", REDACTED):
                out[key] = REDACTED
            else:
                out[key] = scrub(val, depth + 1, _software=software)
        return out
    if isinstance(value, list | tuple):
        return [scrub(v, depth + 1, _software=_software) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


class RedactingFilter(logging.Filter):
    """A handler filter that redacts the formatted message and the exception text of a record.

    The record's message is rendered once (``msg % args``), redacted, and stored back with no
    args, so every formatter downstream sees only the redacted text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} (unformattable args)"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True
