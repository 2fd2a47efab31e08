"""Typed config sections: a dataclass holds a section's defaults once; user values are checked against it.

``resolve_section(Config, given, where)`` merges a config dict over the dataclass defaults, refuses an
unknown key with one line naming it and the closest valid key, checks every value against the field's
type hint (``int``, ``float``, ``bool``, ``str``, ``None``, ``Literal``, unions, ``list``/``tuple``/``dict``
of those, nested dataclasses) and returns both the merged plain dict (what records and hashes see) and
the typed instance (what code uses).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from dinobench.errors import ConfigError

C = TypeVar("C")


def _closest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.4)
    return f" (did you mean {match[0]}?)" if match else f" (known: {', '.join(sorted(candidates))})"


def defaults_of(cls: type) -> dict[str, Any]:
    """The defaults of dataclass ``cls`` as a plain dict (nested dataclasses as dicts, tuples as lists)."""
    return _plain(dataclasses.asdict(cls()))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if hint is type(None):
        return "None"
    if origin is Literal:
        return " or ".join(repr(a) for a in get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(hint))
    if origin in (list, tuple):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        return f"a list of {_describe(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return "a dict"
    return getattr(hint, "__name__", str(hint))


def describe_type(hint: Any) -> str:
    """A type hint in words (``int or None``, ``a list of float``), as error messages and the reference show it."""
    return _describe(hint)


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` (plain config data) fits type hint ``hint``."""
    if hint is Any or hint is object:
        return True
    if hint is type(None) or hint is None:
        return value is None
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in get_args(hint))
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in get_args(hint) if a is not Ellipsis]
        if origin is tuple and len(args) > 1 and Ellipsis not in get_args(hint):
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
        return not args or all(_matches(v, args[0]) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, Mapping)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` converted to what the field holds (ints to floats, lists to tuples, dicts to dataclasses)."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in get_args(hint):
            if arg is not type(None) and _matches(value, arg):
                return _coerce(value, arg)
        return value
    if hint is float and isinstance(value, int):
        return float(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        args = [a for a in get_args(hint) if a is not Ellipsis]
        return tuple(_coerce(v, args[0] if len(args) == 1 or Ellipsis in get_args(hint) else a)
                     for v, a in zip(value, args * len(value) if len(args) == 1 else args))
    if origin is list and isinstance(value, (list, tuple)):
        args = get_args(hint)
        return [_coerce(v, args[0]) for v in value] if args else list(value)
    if dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
        return _build(hint, value, "")
    return value


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _coerce(values[f.name], hints[f.name]) for f in dataclasses.fields(cls) if f.name in values}
    return cls(**kwargs)


def merge_section(cls: type, given: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """``given`` merged over the defaults of dataclass ``cls`` (recursively for nested dataclasses),
    validated: unknown keys and values of the wrong type are one-line :class:`ConfigError`\\ s."""
    merged = defaults_of(cls)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in (given or {}).items():
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown key{_closest(key, names)}")
        hint = hints[key]
        nested = _nested_dataclass(hint)
        if nested is not None and isinstance(value, Mapping):
            merged[key] = merge_section(nested, value, f"{where}.{key}")
            continue
        if not _matches(value, hint):
            raise ConfigError(f"{where}.{key}={value!r}: expected {_describe(hint)}")
        merged[key] = copy.deepcopy(_plain(value))
    return merged


def _nested_dataclass(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    if get_origin(hint) in (Union, types.UnionType):
        inner = [a for a in get_args(hint) if dataclasses.is_dataclass(a)]
        return inner[0] if len(inner) == 1 else None
    return None


def resolve_section(cls: type[C], given: Mapping[str, Any] | None, where: str) -> tuple[dict[str, Any], C]:
    """(merged plain dict, typed instance) of section ``given`` against dataclass ``cls``."""
    merged = merge_section(cls, given, where)
    return merged, _build(cls, merged, where)


def reader_options(cls: type, given: Mapping[str, Any] | None, where: str = "dataset",
                   drop: tuple[str, ...] = ("type",), typed: bool = True) -> dict[str, Any]:
    """A dataset reader's (or transform's) section merged over its options dataclass ``cls``: every key it
    reads, with the one default it has; an unknown key or a wrongly typed value is a one-line ConfigError
    naming ``<where>.<key>`` and the closest valid key. ``drop``: keys that belong to the caller (``type``).
    ``typed=False`` checks the names only (for builders that parse lenient values themselves)."""
    section = {k: v for k, v in dict(given or {}).items() if k not in drop}
    if typed:
        return merge_section(cls, section, where)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in section:
        if key not in names:
            raise ConfigError(f"{where}.{key}: unknown key{_closest(key, names)}")
    return {**defaults_of(cls), **section}
