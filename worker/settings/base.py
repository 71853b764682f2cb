"""What every settings part shares: the ``IDV_`` prefix, parsing of list and mapping
variables, case-insensitive choices and the error that names the variables to change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigurationError

ENV_PREFIX = "IDV_"


class Part(BaseSettings):
    """One capability's settings: frozen, each field read from ``IDV_<FIELD NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        case_sensitive=False,
        frozen=True,
        allow_inf_nan=False,
    )

    def problems(self) -> list[tuple[str, str]]:
        """The rules between this part's own variables that do not hold: (variable, why)."""
        return []


class CrossFieldError(ValueError):
    """Rules between variables that do not hold, each as (variable, why)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{var}: {msg}" for var, msg in problems))


class SettingsError(ConfigurationError):
    """Raised when the environment holds an invalid ``IDV_`` value; names each variable."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"{var}: {msg}" for var, msg in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))


def env_name(field: str) -> str:
    """``redis_url`` -> ``IDV_REDIS_URL``."""
    return ENV_PREFIX + field.upper()


def num(value: float) -> str:
    """A number as a person writes it: ``30`` rather than ``30.0``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def choice(value: Any, choices: Sequence[str]) -> str:
    """``value`` as the one of ``choices`` it names, ignoring case and surrounding spaces."""
    text = str(value).strip()
    for option in choices:
        if text.lower() == option.lower():
            return option
    raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")


def parse_mapping(value: Any, what: str) -> Any:
    """Accept JSON (``{"ID_OCR": 10}``) or ``K=V,K=V`` for mapping variables."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return json.loads(text)
    out: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected {what} as KEY=VALUE[,KEY=VALUE...] or JSON, got {part!r}")
        out[key.strip()] = val.strip()
    return out


def parse_list(value: Any) -> Any:
    """Accept JSON (``["a", "b"]``) or ``a,b`` for list variables."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [v.strip() for v in text.split(",") if v.strip()]
    return value


def http_url(value: str | None) -> str | None:
    """An optional http(s) URL: empty means unset."""
    if value in (None, ""):
        return None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value
