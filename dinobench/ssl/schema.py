"""The training-config schema: every key a training config may set is a key of the defaults file
``configs/_base_/train/ssl_default.py`` (free-form sections excepted).

mmengine merges whatever a config file assigns, so a typo such as ``optim.lrr`` would otherwise be
silently ignored while the default ``optim.lr`` trains; checking the resolved config against the
defaults turns it into a one-line error naming the file, the key and the closest valid key.
"""

from __future__ import annotations

import ast
import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Mapping

from dinobench.errors import ConfigError

#: sections whose keys are free-form (backbone constructor arguments, dataset reader options)
TRAIN_OPEN_SECTIONS = ("student.overrides", "train.dataset", "distillation.teacher", "distillation.students")


def defaults_path() -> Path:
    """``configs/_base_/train/ssl_default.py``: the defaults, and so the schema."""
    from dinobench.utils.paths import configs_dir

    return configs_dir() / "_base_" / "train" / "ssl_default.py"


@lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    from dinobench.config import load_config

    return load_config(defaults_path())


def _is_open(dotted: str, open_sections: tuple[str, ...]) -> bool:
    return any(dotted == s or dotted.startswith(s + ".") for s in open_sections)


def _dotted_keys(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        yield prefix + key
        if isinstance(value, Mapping):
            yield from _dotted_keys(value, prefix + key + ".")


def suggest(dotted: str, schema: Mapping[str, Any] | None = None) -> str | None:
    """The closest valid dotted key: a sibling with a similar name, else a key of the same or a
    similar name in another section (``train.lr`` -> ``optim.lr``); None when nothing is close."""
    schema = _schema() if schema is None else schema
    *parents, leaf = dotted.split(".")
    node: Any = schema
    for part in parents:
        node = node.get(part) if isinstance(node, Mapping) else None
    if isinstance(node, Mapping):
        close = difflib.get_close_matches(leaf, list(node), n=1, cutoff=0.6)
        if close:
            return ".".join([*parents, close[0]])
    every = list(_dotted_keys(schema))
    by_leaf = {}
    for key in every:
        by_leaf.setdefault(key.rsplit(".", 1)[-1], key)
    close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.8)
    if close:
        return by_leaf[close[0]]
    close = difflib.get_close_matches(dotted, every, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_keys(cfg: Mapping[str, Any], schema: Mapping[str, Any] | None = None,
                 open_sections: tuple[str, ...] = TRAIN_OPEN_SECTIONS, prefix: str = "") -> list[str]:
    """Dotted keys of ``cfg`` that the schema (the defaults) does not have, outside ``open_sections``."""
    schema = _schema() if schema is None else schema
    found = []
    for key, value in cfg.items():
        dotted = prefix + key
        if _is_open(dotted, open_sections):
            continue
        if key not in schema:
            found.append(dotted)
        elif isinstance(value, Mapping) and isinstance(schema[key], Mapping):
            found += unknown_keys(value, schema[key], open_sections, dotted + ".")
    return found


def _kind(value: Any) -> str | None:
    """The kind a default fixes for its key (None: a default of None, anything goes)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return "a section (dict(...))"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return None


def type_errors(cfg: Mapping[str, Any], schema: Mapping[str, Any] | None = None,
                open_sections: tuple[str, ...] = TRAIN_OPEN_SECTIONS, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, expected kind) where ``cfg`` holds another kind of value than its default: a section replaced
    by a scalar, text where a number belongs, ... (ints and floats are interchangeable; None is always allowed)."""
    schema = _schema() if schema is None else schema
    found = []
    for key, value in cfg.items():
        dotted = prefix + key
        if key not in schema or _is_open(dotted, open_sections) or value is None:
            continue
        wanted = _kind(schema[key])
        if wanted is not None and _kind(value) != wanted:
            found.append((dotted, wanted))
        elif isinstance(value, Mapping) and isinstance(schema[key], Mapping):
            found += type_errors(value, schema[key], open_sections, dotted + ".")
    return found


def check_train_types(cfg: Mapping[str, Any], path: str | Path, where: str | None = None,
                      schema: Mapping[str, Any] | None = None, section: str = "") -> None:
    """ConfigError for the first key whose value is of another kind than its default (``schema``: the SSL
    defaults unless given, for ``cfg`` = the config's ``section``), naming the file that sets it (or ``where``,
    for overrides) and the value."""
    bad = type_errors(cfg, schema, open_sections=TRAIN_OPEN_SECTIONS if schema is None else ())
    if bad:
        dotted, wanted = bad[0]
        value: Any = cfg
        for part in dotted.split("."):
            value = value[part]
        shown = f"{section}.{dotted}" if section else dotted
        source = where or str(defining_file(Path(path), shown))
        raise ConfigError(f"{source}: {shown} must be {wanted}, got {value!r:.60}")


def unknown_key_message(dotted: str, where: str) -> str:
    """``<where>: unknown key 'optim.lrr' (did you mean optim.lr?)``."""
    close = suggest(dotted)
    hint = f"did you mean {close}?" if close else f"the valid keys are those of {defaults_path()}"
    return f"{where}: unknown key {dotted!r} ({hint})"


def check_train_config(cfg: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`ConfigError` for the first key of the resolved ``cfg`` missing from the defaults,
    naming the file (of ``path`` and its ``_base_`` chain) that sets it."""
    bad = unknown_keys(cfg)
    if bad:
        raise ConfigError(unknown_key_message(bad[0], str(defining_file(Path(path), bad[0]))))


def check_override_keys(keys: list[str], where: str) -> None:
    """The same check for dotted ``key=value`` overrides (before they are applied)."""
    schema = _schema()
    for dotted in keys:
        if _is_open(dotted, TRAIN_OPEN_SECTIONS):
            continue
        node: Any = schema
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise ConfigError(unknown_key_message(dotted, where))
            node = node[part]


# ------------------------------------------------------------------ which file sets a key
def defining_file(path: Path, dotted: str) -> Path:
    """The first file of ``path``'s ``_base_`` chain (the file, then its bases depth-first) whose own
    text sets ``dotted``; ``path`` when none does (best effort: ``dict(...)`` / ``{...}`` syntax)."""
    return next((f for f in _chain(path) if _sets(_parse(f), dotted.split("."))), path)


def _chain(path: Path, seen: frozenset[Path] = frozenset()) -> Iterator[Path]:
    if path in seen:
        return
    yield path
    for base in _bases(_parse(path)):
        yield from _chain((path.parent / base).resolve(), seen | {path})


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return ast.Module(body=[], type_ignores=[])


def _bases(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)]
    return []


def _items(node: ast.AST) -> dict[str, ast.AST] | None:
    """The keys of a ``dict(a=...)`` call or a ``{"a": ...}`` literal."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        return {k.arg: k.value for k in node.keywords if k.arg}
    if isinstance(node, ast.Dict):
        return {k.value: v for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}
    return None


def _sets(tree: ast.Module, parts: list[str]) -> bool:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == parts[0] for t in node.targets):
            value: ast.AST | None = node.value
            for part in parts[1:]:
                items = _items(value) if value is not None else None
                value = items.get(part) if items else None
            if value is not None:
                return True
    return False
