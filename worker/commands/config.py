"""``idv-worker config``: every ``IDV_`` variable, its default, its current value, what it does.

Secrets are masked: ``SecretStr`` settings entirely, and credentials or query values inside any
URL-valued setting (``IDV_REDIS_URL=redis://:secret@host`` shows ``redis://:***@host``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from worker.settings import ENV_PREFIX, PARTS, Settings, load_settings


def mask_url(text: str) -> str:
    """A URL with the password of its user info and the values of its query masked.

    ``redis://:secret@host:6379/0`` -> ``redis://:***@host:6379/0``; text that is not a URL
    with credentials or a query comes back unchanged.
    """
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else f"***@{hostport}"
    query = "&".join(
        f"{name}=***" if sep else name
        for name, sep, _ in (part.partition("=") for part in parts.query.split("&") if part)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else ""
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, list):
        return ",".join(_show(v) for v in value)
    if isinstance(value, dict):
        return f"{len(value)} entries"
    return "" if value is None else str(value)


def describe(settings: Settings | None) -> list[dict[str, str]]:
    """One row per variable: name, default, current (secrets masked), description."""
    rows = []
    for part_name, part in PARTS.items():
        for name, field in part.model_fields.items():
            default = field.get_default(call_default_factory=True)
            row = {
                "variable": ENV_PREFIX + name.upper(),
                "default": _show(default),
                "description": field.description or "",
            }
            if settings is not None:
                row["current"] = _show(getattr(getattr(settings, part_name), name))
            rows.append(row)
    return rows


def markdown_table() -> str:
    """The configuration as a Markdown table (defaults, not the current environment)."""
    lines = ["| variable | default | what it does |", "|---|---|---|"]
    for row in describe(None):
        default = f"`{row['default']}`" if row["default"] else ""
        lines.append(f"| `{row['variable']}` | {default} | {row['description']} |")
    return "\n".join(lines)


def _handle(args: argparse.Namespace) -> int:
    if args.markdown:
        print(markdown_table())
        return 0
    rows = describe(load_settings())
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["variable"]) for r in rows)
    for row in rows:
        print(f"{row['variable']:<{width}}  {row['current']:<30}  {row['description']}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config", help="show every IDV_ variable with its current value (secrets masked)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--markdown", action="store_true", help="print the defaults as a table")
    parser.set_defaults(handler=_handle)
