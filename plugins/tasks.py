"""Registers every task config shipped in ``configs/tasks/`` (task name = file name)."""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.utils.paths import configs_dir
from dinobench.registry import TaskRegistry


@hookimpl
def dinobench_register_tasks(registry: TaskRegistry) -> None:
    """``configs/tasks/<dataset>-<protocol>.py`` -> task ``<dataset>-<protocol>``."""
    registry.add_config_dir(configs_dir() / "tasks")
