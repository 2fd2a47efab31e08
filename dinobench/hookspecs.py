"""THE dinobench extension contract: every hook a plugin may implement.

A plugin is any module or object with functions decorated by :data:`hookimpl` whose names
match the specs below. First-party features (the DINOv3 backbones, the digits/ImageNet
readers, the kNN protocol, the shipped task configs) are plugins registered through exactly
these hooks; third-party packages add theirs with an entry point in group ``"dinobench"``::

    [project.entry-points.dinobench]
    myplugin = "my_package.dinobench_plugin"

Hooks are called with keyword arguments; implementations may accept any subset of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from dinobench.registry import BackboneRegistry, DatasetRegistry, ProtocolRegistry, TaskRegistry
    from dinobench.results import Result

PROJECT_NAME = "dinobench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def dinobench_register_backbones(registry: "BackboneRegistry") -> None:
    """Add backbones: ``registry.add(name, factory, family=..., patch_size=..., embed_dim=...)``.

    ``factory(**overrides)`` returns an ``nn.Module`` honouring the backbone contract
    (``embed_dim``, ``patch_size``, ``n_storage_tokens``, ``forward_features``,
    ``get_intermediate_layers``). Pass it as ``"module:attr"`` to keep listing cheap.
    """


@hookspec
def dinobench_register_datasets(registry: "DatasetRegistry") -> None:
    """Add dataset readers: ``registry.add(name, builder)``.

    ``builder(cfg: dict, data_root: str | None) -> dict[str, Dataset]`` validates the on-disk
    layout before returning (raise :class:`dinobench.errors.DataError` with one clear line).
    """


@hookspec
def dinobench_register_protocols(registry: "ProtocolRegistry") -> None:
    """Add evaluation protocols: ``registry.add(name, cls, version=...)``.

    ``cls(cfg: dict)`` has ``run(ctx: dinobench.runner.RunContext) -> dict`` returning
    ``{"metrics": {...}, "main_metric": name, "higher_is_better": bool}``. Bump ``version``
    whenever a change could move the numbers: results of different versions are never compared.
    """


@hookspec
def dinobench_register_tasks(registry: "TaskRegistry") -> None:
    """Add tasks: ``registry.add(name, config_path_or_dict)`` or ``registry.add_config_dir(dir)``.

    A task config (mmengine format, ``_base_`` allowed) has ``protocol=dict(type=...)`` and
    ``dataset=dict(type=...)`` naming registered entries.
    """


@hookspec
def dinobench_result_written(result: "Result", path: Path) -> None:
    """Called after a run wrote ``path`` (result.json) atomically, e.g. to upload it."""
