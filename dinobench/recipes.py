"""Recipe provenance: which official recipe a shipped task follows, the defaults that depend on the backbone, and
whether a run's resolved config is that recipe.

- ``task.official`` names the official config / script a task's defaults equal (file and entry point); the
  shipped task's resolved defaults *are* that recipe: ``tests/core/test_official_recipes.py`` compares them with
  the values ``scripts/official_recipes.py`` extracts from an official checkout
  (``tests/fixtures/official_recipes.json``).
- ``by_backbone = {"<backbone name or fnmatch pattern>": {"<dotted key>": value}}``: defaults that the official
  recipe sets per backbone (e.g. the detector's windows); applied over the task's defaults, under the user's
  ``--cfg-options``, and gone from the resolved config (their values stay).
- The record's ``recipe``: ``{"official": source, "equal": bool, "differs": [dotted keys]}`` against the task's
  defaults for the run's backbone (and released head); empty for a task without an official recipe.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any, Mapping, Sequence

from dinobench.config import config_diff
from dinobench.errors import ConfigError

#: the top-level section of per-backbone defaults
BY_BACKBONE = "by_backbone"


def official_source(cfg: Mapping[str, Any]) -> str | None:
    """The official recipe a task config cites in ``task.official`` (None when it has none)."""
    task = cfg.get("task") or {}
    source = task.get("official") if isinstance(task, Mapping) else None
    return str(source) if source else None


def backbone_defaults(table: Any, backbone: str | None, where: str) -> dict[str, Any]:
    """The dotted options of a ``by_backbone`` table that apply to ``backbone`` (every matching entry, in file
    order; later entries win); a malformed table is a one-line ConfigError naming ``where``."""
    if table is None:
        return {}
    if not isinstance(table, Mapping) or not all(isinstance(v, Mapping) for v in table.values()):
        raise ConfigError(f"{where}: {BY_BACKBONE} must be dict(<backbone pattern>=dict(<dotted key>=value, ...))")
    if backbone is None:
        return {}
    options: dict[str, Any] = {}
    for pattern, entries in table.items():
        if fnmatchcase(backbone, str(pattern)):
            options.update({str(k): v for k, v in entries.items()})
    return options


def recipe_record(cfg: Mapping[str, Any], defaults: Mapping[str, Any], ignored: Sequence[str]) -> dict[str, Any]:
    """What a record says of its recipe: the official source the task's ``defaults`` follow, and whether ``cfg``
    equals them (``ignored`` dotted keys — runtime keys, input files — do not count); {} without an official one."""
    source = official_source(defaults)
    if source is None:
        return {}
    differs = [key for key, _, _ in config_diff(defaults, cfg, ignored)]
    return {"official": source, "equal": not differs, "differs": differs}


def recipe_line(recipe: Mapping[str, Any] | None) -> str:
    """One line for people: ``official recipe (<source>)``, ``modified recipe: <keys> differ from <source>`` or
    ``no official recipe``."""
    if not recipe or not recipe.get("official"):
        return "no official recipe"
    if recipe.get("equal"):
        return f"official recipe ({recipe['official']})"
    keys = list(recipe.get("differs") or [])
    shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
    return f"modified recipe: {shown} differ from {recipe['official']}"
