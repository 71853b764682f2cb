"""Which fields of the models hold personal data: a marker the models carry, read from them.

A model marks a field ``Field(..., json_schema_extra=PERSONAL)``; ``personal_names`` lists
every marked field of the models given (Python name and wire alias), nested models included.
The redaction denylist is built from that list (``personal_fields.PERSONAL_FIELDS``, generated
from the models by ``make personal-fields`` and checked current by the tests), so a field added
to a model with the marker is redacted in logs and Sentry without a second list to edit.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

PERSONAL: dict[str, Any] = {"pii": True}
"""``json_schema_extra`` of a field that holds personal data (or a secret link to it)."""


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            yield from _models_in(arg)


def personal_names(models: Iterable[type[BaseModel]]) -> frozenset[str]:
    """Names and aliases of every field marked ``PERSONAL`` in ``models`` and the models
    their fields hold."""
    names: set[str] = set()
    seen: set[type[BaseModel]] = set()
    todo = list(models)
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("pii") is True:
                names.add(name)
                if info.alias:
                    names.add(info.alias)
            todo.extend(_models_in(info.annotation))
    return frozenset(names)
