"""Where a task's config comes from: a registered name, a user's own task file (``--task PATH.py``), or a folder
of task files (``--include-path DIR`` / ``$DINOBENCH_TASK_DIRS``, as lm-evaluation-harness's ``--include_path``).

A task file is an mmengine config like the shipped ones (``configs/tasks/*.py``); its ``_base_`` may name
files next to it, absolute paths, or the shipped configs as ``"dinobench::_base_/datasets/imagenet.py"``
(the way mmdet's tools take ``mmdet::`` bases). Its sections are checked exactly like a shipped task's.
"""

from __future__ import annotations

import ast
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from dinobench.config import load_config
from dinobench.errors import ConfigError
from dinobench.utils.paths import configs_dir

if TYPE_CHECKING:
    from dinobench.registry import Registries, TaskRegistry

#: folders of task files (``os.pathsep``-separated), registered after the plugins' tasks
TASK_DIRS_ENV = "DINOBENCH_TASK_DIRS"
#: ``_base_`` prefix naming a shipped config (relative to dinobench's ``configs/``)
SHIPPED_PREFIX = "dinobench::"


@dataclass(frozen=True)
class TaskSource:
    """A task's name (record folder, leaderboard column), its config (path or dict) and how errors name it."""

    name: str
    config: str | Path | Mapping[str, Any]
    where: str
    user_file: bool = False  # given as ``--task PATH.py`` (errors name the file first)


def is_task_file(task: str) -> bool:
    """Whether ``--task`` names a file rather than a registered task."""
    return task.endswith(".py") or os.sep in task or (os.altsep is not None and os.altsep in task)


def task_dirs() -> list[Path]:
    """The folders of ``$DINOBENCH_TASK_DIRS``, in order."""
    return [Path(p).expanduser() for p in os.environ.get(TASK_DIRS_ENV, "").split(os.pathsep) if p.strip()]


def add_include_path(folder: str | Path) -> None:
    """Put ``folder`` first in ``$DINOBENCH_TASK_DIRS`` (what ``--include-path`` does); a missing folder is an error."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ConfigError(f"--include-path {folder}: not a folder; pass a folder of task files (<name>.py)")
    first = str(path.resolve())
    os.environ[TASK_DIRS_ENV] = os.pathsep.join([first, *(str(p) for p in task_dirs() if str(p) != first)])


def register_task_dirs(registry: "TaskRegistry") -> None:
    """Register every ``<dir>/<name>.py`` of :func:`task_dirs` as task ``<name>`` (a name already taken is a
    one-line PluginError naming both sources)."""
    for folder in dict.fromkeys(task_dirs()):
        if not folder.is_dir():
            raise ConfigError(f"${TASK_DIRS_ENV}: {folder} is not a folder; fix or unset it")
        registry._current_source = f"task folder {folder}"  # named in listings and in a name clash
        registry.add_config_dir(folder)


def find_task(task: str, registries: "Registries") -> TaskSource:
    """The config of ``task``: a task file when it looks like a path, else the task of that name in ``registries``."""
    if is_task_file(task):
        path = Path(task).expanduser()
        if not path.is_file():
            raise ConfigError(f"--task {task}: no such task file; pass an existing .py task config or a task name "
                              "(dinobench list tasks)")
        return TaskSource(path.stem, path.resolve(), f"task file {path}", user_file=True)
    spec = registries.tasks.get(task)
    where = f"task {task!r}" + ("" if isinstance(spec.config, Mapping) else f" ({spec.config})")
    return TaskSource(spec.name, spec.config, where)


def load_task_config(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """The plain config dict of a task (``_base_`` merged; ``dinobench::`` bases resolved to the shipped configs)."""
    if isinstance(source, Mapping):
        return load_config(source)
    path = Path(source)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if SHIPPED_PREFIX not in text:
        return load_config(path)
    with tempfile.TemporaryDirectory(prefix="dinobench-task-") as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(_absolute_bases(text, path), encoding="utf-8")
        try:
            return load_config(copy)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(str(copy), str(path))) from None


def _base_path(base: str, path: Path) -> Path:
    """The file a ``_base_`` entry of ``path`` names: a shipped config for ``dinobench::<path under configs/>``
    (missing: a one-line ConfigError), else a path relative to ``path``'s folder (or absolute)."""
    if not base.startswith(SHIPPED_PREFIX):
        return path.parent / base
    target = configs_dir() / base[len(SHIPPED_PREFIX):]
    if not target.is_file():
        raise ConfigError(f"{path}: _base_ {base!r}: no such shipped config (they are under {configs_dir()}, "
                          "e.g. dinobench::_base_/datasets/imagenet.py)")
    return target


def _absolute_bases(text: str, path: Path) -> str:
    """``text`` with its ``_base_`` entries made absolute (shipped ones from ``dinobench::``), so that a copy of the
    file elsewhere loads the same bases."""
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path}: cannot load config: SyntaxError: {exc.msg} (line {exc.lineno})") from None
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_base_"
                                                     for t in node.targets)):
            continue
        try:
            bases = ast.literal_eval(node.value)
        except ValueError:
            raise ConfigError(f"{path}: _base_ must be a string or a list of strings") from None
        bases = [bases] if isinstance(bases, str) else list(bases)
        resolved = []
        for base in bases:
            if not isinstance(base, str):
                raise ConfigError(f"{path}: _base_ must be a string or a list of strings, got {base!r}")
            resolved.append(str(_base_path(base, path).resolve()))
        lines = text.splitlines(keepends=True)
        start, end = node.lineno - 1, node.end_lineno or node.lineno
        return "".join([*lines[:start], f"_base_ = {resolved!r}\n", *lines[end:]])
    return text


# ----------------------------------------------------------------------------- listing without mmengine
class _NotLiteral(Exception):
    """A config file that is more than literal assignments: the listing loads it with mmengine instead."""


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression, ``dict(key=literal, ...)`` included."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        if any(k.arg is None for k in node.keywords):
            raise _NotLiteral
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _NotLiteral
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _NotLiteral from None


def _merge(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """mmengine's merge of a child config over its base: dicts merge key by key unless ``_delete_=True``."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not value.get("_delete_"):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = {k: v for k, v in value.items() if k != "_delete_"} if isinstance(value, Mapping) else value
    return out


def _literal_config(path: Path, depth: int = 0) -> dict[str, Any]:
    """The merged config of a file made only of literal top-level assignments (``_base_`` followed), else
    :class:`_NotLiteral`."""
    if depth > 16:
        raise _NotLiteral
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise _NotLiteral
        own[node.targets[0].id] = _literal(node.value)
    bases = own.pop("_base_", [])
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else bases:
        if not isinstance(base, str) or "{{" in base or ("::" in base and not base.startswith(SHIPPED_PREFIX)):
            raise _NotLiteral
        merged = _merge(merged, _literal_config(_base_path(base, path), depth + 1))
    return _merge(merged, own)


def task_summary(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """What ``dinobench list tasks`` shows of a task: ``protocol`` (type), ``datasets`` (reader types),
    ``description`` and ``official`` (the official recipe its defaults equal, "" for none). A config file of literal assignments is read with ``ast`` (no mmengine import: listing stays
    fast); anything else is loaded like a run loads it. ``tests/core/test_typed_sections.py`` checks both agree on every
    shipped task."""
    cfg: dict[str, Any]
    if isinstance(source, Mapping):
        cfg = dict(source)
    else:
        try:
            cfg = _literal_config(Path(source))
        except (_NotLiteral, OSError, SyntaxError, UnicodeDecodeError):
            cfg = load_task_config(source)
    named = cfg.get("datasets") or {"": cfg.get("dataset", {})}
    types = sorted({str(d.get("type", "?")) for d in named.values() if isinstance(d, Mapping)}) \
        if isinstance(named, Mapping) else []
    protocol = cfg.get("protocol")
    task = cfg.get("task")
    return {"protocol": str(protocol.get("type", "?")) if isinstance(protocol, Mapping) else "?",
            "datasets": types,
            "description": str(task.get("description", "")) if isinstance(task, Mapping) else "",
            "official": str(task.get("official") or "") if isinstance(task, Mapping) else ""}
