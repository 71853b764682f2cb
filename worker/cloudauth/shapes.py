"""The shape a success reply must have before it becomes a record: ``problem(model, result)``.

The models (``worker.cloudauth.models``) are lenient on purpose: they coerce scalars the SDK
passes through (``"Passed": true``) and keep what they do not know. What they cannot tell
apart is a reply that is *wrong*: an object where a string belongs, a score that is not a
number, a ``Passed`` that is neither Y nor N. This module walks the raw ``Result`` along the
model's own fields and names the first such field (``Result.ExtFaceInfo.faceAttack``), so the
client can refuse the reply as a ``MalformedResponse`` instead of storing it.

Fields the model does not declare are not checked (they are kept as they came); ``None`` is
always accepted; ``Ext*`` strings that are not JSON stay tolerated (the model leaves them None).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

# Outcome flags the provider documents as Y or N (seeds 000-002).
YES_NO_FIELDS = frozenset({"Passed", "ocrIdPassed", "spoofResult", "faceAttack", "facePassed"})
_YES_NO = frozenset({"Y", "N"})
_SKIPPED = frozenset({"raw", "request_id"})

Problem = tuple[str, str]
"""(dotted wire path of the field, what is wrong with it) - never the value itself."""


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether decoded JSON nests deeper than ``limit`` containers (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _converter(info: FieldInfo) -> str:
    for meta in info.metadata:
        func = getattr(meta, "func", None)
        if func is not None:
            return str(getattr(func, "__name__", ""))
    return ""


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model class inside ``Model | None`` or ``list[Model] | None``, if any."""
    candidates = [annotation]
    while candidates:
        current = candidates.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            return current
        origin = get_origin(current)
        if origin in (Union, UnionType, list):
            candidates.extend(get_args(current))
    return None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return True
        try:
            float(text)
        except ValueError:
            return False
        return True
    return False


def _decoded(value: Any, max_depth: int) -> tuple[Any, str]:
    """A JSON member that may arrive as a string: (decoded or None, problem or "")."""
    if not isinstance(value, str):
        return value, ""
    text = value.strip()
    if not text or text[0] not in "[{":
        return None, ""
    try:
        parsed = json.loads(text)
    except RecursionError:
        return None, f"nested deeper than {max_depth} levels"
    except ValueError:
        return None, ""  # tolerated: the model leaves the field None, raw keeps the text
    if json_depth_exceeds(parsed, max_depth):
        return None, f"nested deeper than {max_depth} levels"
    return parsed, ""


def problem(
    model: type[BaseModel], data: Mapping[str, Any], *, max_depth: int = 64
) -> Problem | None:
    """The first field of ``data`` (a raw ``Result``) that does not fit ``model``, or None."""
    return _walk(model, data, "Result", max_depth)


def _walk(model: type[BaseModel], data: Mapping[str, Any], path: str, depth: int) -> Problem | None:
    for name, info in model.model_fields.items():
        alias = info.alias or name
        if name in _SKIPPED or alias not in data or data[alias] is None:
            continue
        found = _check(info, data[alias], f"{path}.{alias}", alias, depth)
        if found is not None:
            return found
    return None


def _check(info: FieldInfo, value: Any, where: str, alias: str, depth: int) -> Problem | None:
    kind = _converter(info)
    if kind == "_to_str":
        if isinstance(value, dict | list):
            return where, f"expected a string, got {type(value).__name__}"
        if alias in YES_NO_FIELDS:
            flag = ("Y" if value else "N") if isinstance(value, bool) else str(value).strip()
            if flag not in _YES_NO:
                return where, "expected Y or N"
        return None
    if kind == "_to_float":
        return None if _is_number(value) else (where, "expected a number")
    if kind == "_to_str_list":
        return None if isinstance(value, str | list) else (where, "expected a list of strings")
    if kind in ("_json_object", "_json_object_list"):
        if not isinstance(value, str | dict | list):
            return where, f"expected an object or a JSON string, got {type(value).__name__}"
        if kind == "_json_object" and isinstance(value, list):
            return where, "expected an object, got a list"
        parsed, why = _decoded(value, depth)
        if why:
            return where, why
        sub = _nested_model(info.annotation)
        if sub is None:
            return None
        items = parsed if isinstance(parsed, list) else [parsed]
        for item in items:
            if isinstance(item, Mapping):
                found = _walk(sub, item, where, depth)
                if found is not None:
                    return found
        return None
    if kind == "_json_any":
        _, why = _decoded(value, depth)
        return (where, why) if why else None
    return None
