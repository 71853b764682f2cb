"""Emulator configuration: access keys, quotas, business-time windows, callback policy, faults.

Plain dataclasses: built once from the command line, changed at run time by the control API.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_ACCESS_KEY = ("idv-demo-key", "idv-demo-secret")
DEFAULT_PORT = 8765
API_VERSION = "2022-08-09"

# QPS per product code and account, applied to each API of the product (spec §7, [DOC-QPS]).
# ID_OCR_MIN and eKYC_MIN are not published; they get ID_OCR's and eKYC's 10.
PROVIDER_QUOTAS: dict[str, float] = {
    "eKYC": 10,
    "eKYC_NDI": 10,
    "eKYC_PRO": 5,
    "eKYC_MIN": 10,
    "eKYC_Date_MIN": 10,
    "FACE_LIVENESS_PRO": 10,
    "FACE_LIVENESS": 50,
    "FACE_IDU": 50,
    "FACE_IDU_MIN": 10,
    "FACE_VERIFY": 50,
    "FACE_GUARD": 50,
    "FACE_GUARD_PRO": 50,
    "FACE_COMPARE": 10,
    "FACE_CROSS_COMPARE": 10,
    "FACE_DEEPFAKE": 10,
    "ID_OCR": 10,
    "ID_OCR_MIN": 10,
    "ID_OCR_MAX": 5,
    "ID_NFC": 10,
    "ID_2META": 50,
    "MOBILE_2META": 50,
    "MOBILE_3META": 50,
    "BANK_CARD_N_META": 50,
    "CREDENTIAL_DETECT": 10,
    "CREDENTIAL_RECOGNITION": 5,
    "ADD_VERIFY_PRO": 20,
}


class ConfigError(ValueError):
    """A configuration value (flag or control-API payload) that cannot be used."""


@dataclass
class Faults:
    """Injected failures; rates are probabilities in 0..1 applied to provider API calls."""

    error_500_rate: float = 0.0
    error_503_rate: float = 0.0
    latency_ms: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    non_json_rate: float = 0.0
    download_bytes_per_s: float = 0.0
    break_downloads: int = 0
    break_after_bytes: int | None = None
    forbidden_code: str | None = None
    # A success reply that is not a usable answer: no_result, bad_passed, wrong_type, deep
    # (nested 100k levels) or oversized (over 9 MiB).
    malformed_success: str | None = None
    actions: list[str] | None = None
    arrival_jitter_ms: float = 0.0
    drop_callbacks: float = 0.0
    drop_callbacks_seed: int = 0

    def applies_to(self, action: str) -> bool:
        """Whether API faults apply to ``action`` (all actions unless ``actions`` limits them)."""
        return self.actions is None or action in self.actions

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def update(self, values: dict[str, Any]) -> None:
        """Set the given fields (validated); unknown names or bad values raise ``ConfigError``."""
        known = {f.name for f in fields(self)}
        staged = Faults(**self.as_dict())
        for name, raw in values.items():
            if name not in known:
                raise ConfigError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            setattr(staged, name, _coerce_fault(name, raw))
        for name in known:
            setattr(self, name, getattr(staged, name))


_RATE_FAULTS = {
    "error_500_rate",
    "error_503_rate",
    "drop_rate",
    "truncate_rate",
    "non_json_rate",
    "drop_callbacks",
}
MALFORMED_KINDS = ("no_result", "bad_passed", "wrong_type", "deep", "oversized")
_COUNT_FAULTS = {"break_downloads", "drop_callbacks_seed"}


def _coerce_fault(name: str, raw: Any) -> Any:
    if name == "actions":
        if raw is None or raw == "":
            return None
        if isinstance(raw, str):
            raw = json.loads(raw) if raw.startswith("[") else raw.split(",")
        if not isinstance(raw, list) or not all(isinstance(a, str) for a in raw):
            raise ConfigError("actions must be a list of action names")
        return [a.strip() for a in raw if a.strip()]
    if name == "forbidden_code":
        return None if raw in (None, "", "none") else str(raw)
    if name == "malformed_success":
        if raw in (None, "", "none"):
            return None
        if raw not in MALFORMED_KINDS:
            raise ConfigError(f"malformed_success must be one of {', '.join(MALFORMED_KINDS)}")
        return str(raw)
    if name == "break_after_bytes":
        return None if raw in (None, "") else _number(name, raw, int, 0)
    if name in _COUNT_FAULTS:
        return _number(name, raw, int, 0)
    value = _number(name, raw, float, 0)
    if name in _RATE_FAULTS and value > 1:
        raise ConfigError(f"{name} is a probability in 0..1, got {value}")
    return value


def _number(name: str, raw: Any, kind: type[int] | type[float], minimum: float) -> Any:
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


@dataclass
class EmulatorConfig:
    """Everything the emulator needs at start; business windows are in (emulated) seconds."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    access_keys: dict[str, str] = field(default_factory=lambda: dict([DEFAULT_ACCESS_KEY]))
    quotas: dict[str, float] = field(default_factory=lambda: dict(PROVIDER_QUOTAS))
    quota_algorithm: str = "sliding"
    quota_burst: float | None = None
    link_validity: float = 15 * 60
    fresh_link_window: float = 30 * 60
    retention: float = 30 * 24 * 3600
    date_window: float = 15 * 60
    callback_retries: int = 2
    callback_retry_interval: float = 1.0
    callback_timeout: float = 3.0
    image_fetch_timeout: float = 5.0
    faults: Faults = field(default_factory=Faults)


def parse_access_key(text: str) -> tuple[str, str]:
    """``AK:SECRET`` -> ``(AK, SECRET)``."""
    key, sep, secret = text.partition(":")
    if not sep or not key or not secret:
        raise ConfigError("access key must be given as ACCESS_KEY_ID:SECRET")
    return key, secret


def parse_quotas(values: dict[str, Any]) -> dict[str, float]:
    """Validate ``{"PRODUCT": qps, "PRODUCT:Api": qps}``; every quota must be > 0."""
    out: dict[str, float] = {}
    for key, raw in values.items():
        qps = _number(f"quota {key}", raw, float, 0)
        if qps <= 0 or not key or key.count(":") > 1:
            raise ConfigError(f"quota {key!r} must name PRODUCT or PRODUCT:Api and be > 0")
        out[key] = qps
    return out


def parse_quota_policy(payload: dict[str, Any]) -> tuple[str, float | None]:
    """``{"algorithm": ..., "burst": N|null}`` -> ``(algorithm, burst)`` (values unchecked)."""
    unknown = set(payload) - {"algorithm", "burst"}
    if unknown or "algorithm" not in payload:
        raise ConfigError("quota-algorithm takes algorithm and optionally burst")
    algorithm = payload["algorithm"]
    if not isinstance(algorithm, str):
        raise ConfigError("algorithm must be a string")
    raw = payload.get("burst")
    burst = None if raw in (None, "") else _number("burst", raw, float, 1)
    return algorithm, burst


def parse_assignment(text: str, what: str) -> tuple[str, str]:
    """``NAME=VALUE`` -> ``(NAME, VALUE)``."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"{what} must be given as NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()
