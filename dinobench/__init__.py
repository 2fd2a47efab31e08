"""dinobench: benchmark and adapt DINOv3-style self-supervised vision backbones.

Public API (stable): :func:`create_backbone`, :func:`list_backbones`, :func:`list_tasks`,
:func:`run`. Heavy dependencies (torch, mmengine) are imported lazily so that
``dinobench list`` stays fast.
"""

from __future__ import annotations

from pathlib import Path as _Path
from typing import TYPE_CHECKING, Any

from dinobench import _layout
from dinobench._version import __version__
from dinobench.errors import DinobenchError

_layout.install(_Path(__file__).resolve().parent)

if TYPE_CHECKING:
    from torch import nn

    from dinobench.results import Result

__all__ = [
    "DinobenchError",
    "__version__",
    "create_backbone",
    "list_backbones",
    "list_datasets",
    "list_tasks",
    "run",
]


def create_backbone(name: str, weights: str | None = None, **overrides: Any) -> "nn.Module":
    """Build backbone ``name`` (random init unless ``weights`` is a checkpoint path).

    ``overrides`` use the official constructor argument names (``embed_dim``, ``depth``, ...).
    """
    from dinobench.backbones import create_backbone as _create

    return _create(name, weights=weights, **overrides)


def list_backbones() -> list[str]:
    """Names of every registered backbone (first-party and installed plugins)."""
    from dinobench.plugin_manager import get_registries

    return get_registries().backbones.names()


def list_tasks() -> list[str]:
    """Names of every registered task (``<dataset>-<protocol>``)."""
    from dinobench.plugin_manager import get_registries

    return get_registries().tasks.names()


def list_datasets() -> list[str]:
    """Names of every registered dataset reader."""
    from dinobench.plugin_manager import get_registries

    return get_registries().datasets.names()


def run(
    backbone: str | None,
    task: str | None,
    weights: str | None = None,
    data_root: str | None = None,
    output_dir: str | None = None,
    options: dict[str, Any] | list[str] | None = None,
    device: str = "cpu",
    seed: int = 0,
    save_predictions: bool = False,
    head: str | None = None,
    head_weights: str | None = None,
    precision: str | None = None,
) -> "Result":
    """Run ``task`` on ``backbone`` and write ``<output>/<backbone>/<task>/<UTC>/result.json``; with ``head`` /
    ``head_weights`` evaluate that released head (``dinobench list heads``) instead of training one.
    ``precision``: ``auto`` (None), ``float32`` or ``bfloat16`` feature extraction (see ``dinobench.utils.precision``)."""
    from dinobench.runner import run as _run

    return _run(
        backbone=backbone,
        task=task,
        weights=weights,
        data_root=data_root,
        output_dir=output_dir,
        options=options,
        device=device,
        seed=seed,
        save_predictions=save_predictions,
        head=head,
        head_weights=head_weights,
        precision=precision,
    )
