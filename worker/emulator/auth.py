"""Server-side request authentication: ACS3-HMAC-SHA256 (spec §3) and legacy RPC HMAC-SHA1 (§4).

Verification recomputes the signature over the ``SignedHeaders`` the request declares, with the
emulator's own arithmetic (``worker.emulator.signing``). Dates are checked against the real
wall clock.
"""

from __future__ import annotations

import calendar
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from worker.emulator import signing
from worker.emulator.errors import ApiError, missing

# Headers an ACS3 request must sign; content-type too when a body is sent.
REQUIRED_SIGNED = (
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)
RPC_REQUIRED = (
    "AccessKeyId",
    "Signature",
    "SignatureMethod",
    "SignatureNonce",
    "SignatureVersion",
    "Timestamp",
)


@dataclass(frozen=True)
class IncomingRequest:
    """The parts of an HTTP request that signatures cover (header names lower-case)."""

    method: str
    path: str
    query: Sequence[tuple[str, str]]
    headers: Sequence[tuple[str, str]]
    body: bytes
    body_params: Sequence[tuple[str, str]]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


def parse_timestamp(text: str) -> float:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC) -> epoch seconds; ``InvalidTimeStamp.Format`` otherwise."""
    if len(text) != 20 or text[10] != "T" or text[19] != "Z":
        raise ApiError("InvalidTimeStamp.Format")
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        raise ApiError("InvalidTimeStamp.Format") from None


class NonceCache:
    """Nonces seen within the date window; a nonce seen again before it expires is a replay.

    Entries expire after ``ttl`` (the date window: older requests fail the date check anyway);
    ``capacity`` bounds memory under sustained high request rates by dropping the oldest.
    """

    def __init__(
        self, ttl: float, capacity: int = 2_000_000, now: Callable[[], float] = time.time
    ) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._now = now
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, nonce: str) -> bool:
        """Record ``nonce``; False if it was already seen and has not expired."""
        now = self._now()
        order, seen = self._order, self._seen
        while order and (order[0][0] <= now or len(order) > self.capacity):
            expiry, old = order.popleft()
            if seen.get(old) == expiry:
                del seen[old]
        if nonce in seen:
            return False
        expiry = now + self.ttl
        seen[nonce] = expiry
        order.append((expiry, nonce))
        return True

    def clear(self) -> None:
        self._seen.clear()
        self._order.clear()


class Authenticator:
    """Verifies either signature scheme and returns the access key id of the caller."""

    def __init__(
        self,
        keys: Mapping[str, str],
        date_window: float = 900.0,
        nonces: NonceCache | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.date_window = date_window
        self.nonces = nonces if nonces is not None else NonceCache(date_window, now=now)
        self._now = now

    def verify(self, request: IncomingRequest) -> str:
        """Raise ``ApiError`` unless ``request`` is correctly signed by a known key."""
        authorization = request.header("authorization")
        if authorization is not None:
            return self._verify_acs3(request, authorization)
        if any(k == "Signature" for k, _ in request.query):
            return self._verify_rpc(request)
        if request.header("x-acs-signature-nonce") or request.header("x-acs-date"):
            raise ApiError("IncompleteSignature", "The Authorization header is missing.")
        raise missing("Signature")

    def _check_date(self, stamp: float) -> None:
        if abs(self._now() - stamp) > self.date_window:
            raise ApiError("InvalidTimeStamp.Expired")

    def _secret(self, access_key_id: str) -> str:
        secret = self.keys.get(access_key_id)
        if secret is None:
            raise ApiError("InvalidAccessKeyId.NotFound")
        return secret

    def _check_nonce(self, access_key_id: str, nonce: str) -> None:
        if not self.nonces.check_and_add(f"{access_key_id}\x00{nonce}"):
            raise ApiError("SignatureNonceUsed")

    def _verify_acs3(self, request: IncomingRequest, authorization: str) -> str:
        parsed = signing.read_acs3_authorization(authorization)
        if parsed is None:
            raise ApiError("IncompleteSignature", "The Authorization header is malformed.")
        declared = set(parsed.signed_headers)
        required = set(REQUIRED_SIGNED)
        if request.body:
            required.add("content-type")
        absent = sorted(required - declared)
        if absent:
            raise ApiError(
                "IncompleteSignature", f"SignedHeaders must include: {', '.join(absent)}."
            )
        present = {name for name, _ in request.headers}
        unsent = sorted(declared - present)
        if unsent:
            raise ApiError(
                "IncompleteSignature",
                f"Signed headers are not in the request: {', '.join(unsent)}.",
            )
        self._check_date(parse_timestamp(request.header("x-acs-date") or ""))
        secret = self._secret(parsed.access_key_id)
        payload_hash = request.header("x-acs-content-sha256") or ""
        if not signing.same(payload_hash, signing.hex_sha256(request.body)):
            raise ApiError(
                "SignatureDoesNotMatch", "The x-acs-content-sha256 does not match the body."
            )
        expected = signing.acs3_expected_signature(
            secret,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            declared=parsed.signed_headers,
            payload_hash=payload_hash,
        )
        if not signing.same(parsed.signature, expected):
            raise ApiError("SignatureDoesNotMatch")
        self._check_nonce(parsed.access_key_id, request.header("x-acs-signature-nonce") or "")
        return parsed.access_key_id

    def _verify_rpc(self, request: IncomingRequest) -> str:
        params = [*request.query, *request.body_params]
        values = dict(params)
        for name in RPC_REQUIRED:
            if not values.get(name):
                raise missing(name)
        if values["SignatureMethod"] != "HMAC-SHA1" or values["SignatureVersion"] != "1.0":
            raise ApiError("IncompleteSignature", "Only HMAC-SHA1 signature version 1.0 is known.")
        self._check_date(parse_timestamp(values["Timestamp"]))
        secret = self._secret(values["AccessKeyId"])
        expected = signing.rpc_expected_signature(secret, request.method, params)
        if not signing.same(values["Signature"], expected):
            raise ApiError("SignatureDoesNotMatch")
        self._check_nonce(values["AccessKeyId"], values["SignatureNonce"])
        return values["AccessKeyId"]
