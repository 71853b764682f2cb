"""The emulator's own signature arithmetic: ACS3-HMAC-SHA256 (spec §3) and RPC HMAC-SHA1 (§4).

Written from the spec, not shared with the client (``worker.cloudauth``): the emulator stands in
for the provider's gateway, and one implementation used on both sides would let a wrong rule
pass on both. Verification only; nothing here builds requests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ACS3 = "ACS3-HMAC-SHA256"
# RFC 3986 unreserved characters: the only ones left unencoded in canonical strings.
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def rfc3986(text: str) -> str:
    """Percent-encode every UTF-8 byte outside the unreserved set (space -> ``%20``)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def hex_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two signatures or hashes."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def canonical_query_string(params: Iterable[tuple[str, str]]) -> str:
    """Pairs encoded with RFC 3986, sorted, joined by ``&``; blank values stay as ``name=``."""
    encoded = sorted((rfc3986(name), rfc3986(value)) for name, value in params)
    return "&".join(name + "=" + value for name, value in encoded)


def canonical_header_block(
    headers: Sequence[tuple[str, str]], declared: Sequence[str]
) -> tuple[str, str]:
    """``(CanonicalHeaders, SignedHeaders)`` over the ``declared`` names found in ``headers``.

    Names are lower-cased, values trimmed; a repeated header has its values sorted and joined
    by commas. Each canonical line ends with a newline.
    """
    wanted = {name.lower() for name in declared}
    values: dict[str, list[str]] = {}
    for name, value in headers:
        key = name.lower()
        if key in wanted:
            values.setdefault(key, []).append(value.strip())
    names = sorted(values)
    block = "".join(name + ":" + ",".join(sorted(values[name])) + "\n" for name in names)
    return block, ";".join(names)


def acs3_expected_signature(
    secret: str,
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    declared: Sequence[str],
    payload_hash: str,
) -> str:
    """The signature an ACS3 request must carry, from its parts as received."""
    header_block, signed = canonical_header_block(headers, declared)
    canonical_request = "\n".join(
        (method.upper(), path or "/", canonical_query_string(query), header_block, signed)
    )
    canonical_request += "\n" + payload_hash
    string_to_sign = ACS3 + "\n" + hex_sha256(canonical_request.encode("utf-8"))
    mac = hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256)
    return mac.hexdigest()


@dataclass(frozen=True)
class Acs3Credential:
    """What the ``Authorization`` header of an ACS3 request declares."""

    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def read_acs3_authorization(value: str) -> Acs3Credential | None:
    """Parse ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``; None if malformed."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme != ACS3 or not rest:
        return None
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, equals, content = item.strip().partition("=")
        if not equals:
            return None
        parts[name] = content
    if not {"Credential", "SignedHeaders", "Signature"} <= parts.keys():
        return None
    names = tuple(name for name in parts["SignedHeaders"].split(";") if name)
    return Acs3Credential(parts["Credential"], names, parts["Signature"])


def rpc_expected_signature(secret: str, method: str, params: Iterable[tuple[str, str]]) -> str:
    """Legacy RPC: Base64(HMAC-SHA1(secret + "&", METHOD&%2F&enc(canonical query))).

    The canonical query covers every parameter, query and body alike, except ``Signature``.
    """
    canonical = canonical_query_string((k, v) for k, v in params if k != "Signature")
    string_to_sign = method.upper() + "&" + rfc3986("/") + "&" + rfc3986(canonical)
    key = (secret + "&").encode("utf-8")
    return base64.b64encode(hmac.new(key, string_to_sign.encode("utf-8"), "sha1").digest()).decode()
