"""The one base of Bay's pydantic models: unknown fields are refused (a
typo in pillar is an error naming the field, never silently ignored); and
the one way a secret is declared (:data:`Secret`) and hidden
(:func:`redact`)."""

from __future__ import annotations

import copy
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, SecretStr, SerializationInfo

#: what a secret is shown as where it must not be (a node's report to the master, ``bay.settings``)
REDACTED = "<redacted>"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _given(value: SecretStr, info: SerializationInfo) -> str:
    text = value.get_secret_value()
    return REDACTED if text and (info.context or {}).get("redact") else text


#: a secret field: pydantic's SecretStr, so never in a model's repr or an error; dumped as its
#: plain text (what the formula renders with), or as REDACTED in a dump with context ``{"redact": True}``
Secret = Annotated[SecretStr, PlainSerializer(_given, return_type=str)]


def secret_paths(model: type[BaseModel]) -> list[tuple[str, ...]]:
    """Where ``model``'s dumped data holds secrets: key paths, ``*`` for any key of a mapping.
    Found from the field types, so a new :data:`Secret` field is hidden with no list to keep."""
    return [(name, *rest) for name, f in model.model_fields.items() for rest in _paths(f.annotation)]


def _paths(tp: Any) -> list[tuple[str, ...]]:
    if tp is SecretStr:
        return [()]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _paths(args[0])
    if origin is dict:
        return [("*", *p) for p in _paths(args[1])]
    if origin in (typing.Union, types.UnionType):
        return [p for a in args for p in _paths(a)]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return secret_paths(tp)
    return []


def redact(data: dict, paths: list[tuple[str, ...]]) -> dict:
    """A copy of ``data`` (a dump, or raw pillar) with every non-empty value at ``paths`` shown as REDACTED."""
    out = copy.deepcopy(data)
    for path in paths:
        _redact(out, path)
    return out


def _redact(node: Any, path: tuple[str, ...]) -> None:
    if not isinstance(node, dict) or not path:
        return
    key, rest = path[0], path[1:]
    for k in (list(node) if key == "*" else [key] if key in node else []):
        if rest:
            _redact(node[k], rest)
        elif node[k]:
            node[k] = REDACTED
