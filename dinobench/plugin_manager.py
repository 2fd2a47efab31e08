"""The pluggy PluginManager: first-party plugins plus every installed ``dinobench`` entry point.

A broken third-party plugin (import error, hook with no matching spec, exception while
registering) is skipped with a one-line warning naming its package; it never takes the CLI down.
Set ``DINOBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` to load first-party plugins only.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import pkgutil
from importlib import metadata
from typing import Any

import pluggy

from dinobench import hookspecs
from dinobench.registry import Registries
from dinobench.tasks import register_task_dirs

logger = logging.getLogger("dinobench")

#: The package whose modules are the first-party plugins: every module in it is discovered and registered
#: exactly like a third-party plugin (pytest's way); a new family is a new module there, no list to edit.
BUILTIN_PACKAGE = "dinobench.plugins"


@functools.lru_cache(maxsize=1)
def builtin_plugins() -> tuple[str, ...]:
    """The first-party plugin modules (``dinobench.plugins.<name>``), sorted by name."""
    package = importlib.import_module(BUILTIN_PACKAGE)
    return tuple(f"{BUILTIN_PACKAGE}.{info.name}" for info in sorted(pkgutil.iter_modules(package.__path__),
                                                                     key=lambda info: info.name)
                 if not info.name.startswith("_"))


REGISTER_HOOKS = {
    "dinobench_register_backbones": "backbones",
    "dinobench_register_datasets": "datasets",
    "dinobench_register_protocols": "protocols",
    "dinobench_register_tasks": "tasks",
    "dinobench_register_feature_kinds": "feature_kinds",
    "dinobench_register_commands": "commands",
    "dinobench_register_heads": "heads",
    "dinobench_register_schedules": "schedules",
    "dinobench_register_optimizers": "optimizers",
    "dinobench_register_synthetic_writers": "synthetic_writers",
    "dinobench_register_head_layouts": "head_layouts",
}


#: plugin name -> the installed distribution that provided it (entry-point plugins only)
_DISTRIBUTIONS: dict[str, metadata.Distribution] = {}


def _warn(message: str) -> None:
    logger.warning("dinobench: warning: %s", message)


def _distribution_of(plugin_name: str) -> str:
    dist = _DISTRIBUTIONS.get(plugin_name)
    if dist is not None:
        return f"package {dist.name} {dist.version}"
    return "first-party" if plugin_name.startswith("dinobench.") else f"plugin {plugin_name}"


def _register_checked(pm: pluggy.PluginManager, plugin: Any, name: str, dist: Any = None) -> bool:
    """Register ``plugin``; unregister it again if any hook matches no spec."""
    pm.register(plugin, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        pm.unregister(plugin)
        where = f"package {dist.name}" if dist is not None else name
        _warn(f"plugin {name!r} ({where}) skipped: {str(exc).splitlines()[0]}")
        return False
    if dist is not None:
        _DISTRIBUTIONS[name] = dist  # shown by `dinobench list plugins` and in warnings
    return True


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in metadata.entry_points(group=hookspecs.PROJECT_NAME):
        dist = getattr(ep, "dist", None)
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not break dinobench
            pkg = dist.name if dist is not None else ep.value
            _warn(f"plugin {ep.name!r} (package {pkg}) failed to import and was skipped: "
                  f"{type(exc).__name__}: {exc}")
            continue
        _register_checked(pm, plugin, ep.name, dist)


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (first-party plugins, then entry points)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for module_name in builtin_plugins():
        pm.register(importlib.import_module(module_name), name=module_name)
    pm.check_pending()  # first-party plugins must be exact: fail loudly
    if not os.environ.get("DINOBENCH_DISABLE_PLUGIN_AUTOLOAD"):
        _load_entry_points(pm)
    return pm


def _unregister_source(registries: Registries, source: str) -> None:
    for reg in registries.all():
        for name in [n for n, s in reg._entries.items() if getattr(s, "source", "") == source]:
            del reg._entries[name]


@functools.lru_cache(maxsize=1)
def get_registries() -> Registries:
    """Registries filled by calling each plugin's register hooks, one plugin at a time."""
    pm = get_plugin_manager()
    registries = Registries()
    for hook_name, attr in REGISTER_HOOKS.items():
        caller = getattr(pm.hook, hook_name)
        # pluggy returns impls last-registered-first; register first-party entries first.
        for impl in reversed(caller.get_hookimpls()):
            registries.set_source(impl.plugin_name)
            try:
                impl.function(registry=getattr(registries, attr))
            except Exception as exc:
                if impl.plugin_name in builtin_plugins():
                    raise
                _unregister_source(registries, impl.plugin_name)
                _warn(f"plugin {impl.plugin_name!r} ({_distribution_of(impl.plugin_name)}) "
                      f"failed in {hook_name} and was skipped: {type(exc).__name__}: {exc}")
    register_task_dirs(registries.tasks)  # --include-path / $DINOBENCH_TASK_DIRS: folders of task files
    registries.set_source("")
    return registries


def plugin_rows() -> list[dict[str, str]]:
    """One row per registered plugin: name, distribution, version (for ``dinobench list plugins``)."""
    pm = get_plugin_manager()
    rows = []
    for name, _plugin in pm.list_name_plugin():
        dist = _DISTRIBUTIONS.get(name)
        rows.append({
            "plugin": name,
            "package": dist.name if dist else "dinobench (built-in)",
            "version": dist.version if dist else "",
        })
    return rows


def reset() -> None:
    """Forget the cached manager and registries (tests; after installing a plugin in-process)."""
    get_registries.cache_clear()
    get_plugin_manager.cache_clear()
    _DISTRIBUTIONS.clear()
