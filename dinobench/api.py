"""The one module a plugin imports (with :mod:`dinobench.hookspecs` for the hook names): the types a plugin
implements against and the building blocks it reuses. Anything else of dinobench is internal and may move.

Names resolve on first use (PEP 562), so ``from dinobench.api import hookimpl`` in a plugin's registration
module costs nothing and ``dinobench list`` stays fast; heavy parts (torch, the engine) load when a protocol
actually runs.

- hooks: :data:`hookimpl`
- the two templates: :class:`TrainedHeadProtocol` (+ :class:`TrainedHeadConfig`) and :class:`FeatureProbeProtocol`
- protocols: :class:`Protocol`, :class:`ProtocolResult`, :class:`TrainedHead`, :class:`EmptyConfig`,
  :class:`RunContext` (what ``Protocol.run(ctx)`` gets), :class:`DatasetLike` (what a reader returns)
- typed sections: :func:`reader_options` (a reader's or transform's section against its dataclass),
  :func:`resolve_section`
- data layouts: :func:`root_folder`, :func:`require_dir`, :func:`images_in`, :func:`pair_by_stem` (one-line
  DataErrors naming the path)
- joint transforms (torchvision v2 over ``tv_tensors``): :class:`JointTransform` and the steps the first-party
  families use, :class:`Rescale`, :class:`RandomCrop`, :class:`PadTo`, :class:`RandomRotation`, :class:`ImageOnly`
- the engine: :func:`train_head`, :class:`TrainConfig`, :func:`evaluate_sharded`, :class:`MergeableMetric`
- models: :class:`BackboneNeckHead`, :class:`Neck`, :func:`check_backbone`
- metrics: :func:`topk_accuracy`, :func:`knn_class_scores`
- tasks (for plugin commands): :func:`resolve_task`, :func:`build_datasets`
- errors: :class:`DinobenchError`, :class:`ConfigError`, :class:`DataError`, :class:`PluginError`
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "hookimpl": "dinobench.hookspecs",
    "DatasetLike": "dinobench.protocol",
    "EmptyConfig": "dinobench.protocol",
    "Protocol": "dinobench.protocol",
    "ProtocolResult": "dinobench.protocol",
    "TrainedHead": "dinobench.protocol",
    "RunContext": "dinobench.context",
    "TrainedHeadProtocol": "dinobench.templates.trained_head",
    "TrainedHeadConfig": "dinobench.templates.trained_head",
    "FeatureProbeProtocol": "dinobench.templates.feature_probe",
    "reader_options": "dinobench.typed_config",
    "root_folder": "dinobench.data.layout",
    "require_dir": "dinobench.data.layout",
    "images_in": "dinobench.data.layout",
    "pair_by_stem": "dinobench.data.layout",
    "resolve_section": "dinobench.typed_config",
    "JointTransform": "dinobench.data.joint",
    "Rescale": "dinobench.data.joint",
    "RandomCrop": "dinobench.data.joint",
    "PadTo": "dinobench.data.joint",
    "RandomRotation": "dinobench.data.joint",
    "ImageOnly": "dinobench.data.joint",
    "train_head": "dinobench.training.head",
    "TrainConfig": "dinobench.training.config",
    "evaluate_sharded": "dinobench.metrics.sharded",
    "MergeableMetric": "dinobench.metrics.sharded",
    "BackboneNeckHead": "dinobench.heads.model",
    "Neck": "dinobench.heads.necks",
    "check_backbone": "dinobench.backbones.contract",
    "topk_accuracy": "dinobench.metrics.classification",
    "knn_class_scores": "dinobench.protocols.knn",
    "resolve_task": "dinobench.resolve",
    "build_datasets": "dinobench.runner",
    "DinobenchError": "dinobench.errors",
    "ConfigError": "dinobench.errors",
    "DataError": "dinobench.errors",
    "PluginError": "dinobench.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name is imported on first use
    from dinobench.backbones.contract import check_backbone
    from dinobench.context import RunContext
    from dinobench.data.joint import ImageOnly, JointTransform, PadTo, RandomCrop, RandomRotation, Rescale
    from dinobench.data.layout import images_in, pair_by_stem, require_dir, root_folder
    from dinobench.errors import ConfigError, DataError, DinobenchError, PluginError
    from dinobench.heads.model import BackboneNeckHead
    from dinobench.heads.necks import Neck
    from dinobench.hookspecs import hookimpl
    from dinobench.protocol import DatasetLike, EmptyConfig, Protocol, ProtocolResult, TrainedHead
    from dinobench.metrics.classification import topk_accuracy
    from dinobench.protocols.knn import knn_class_scores
    from dinobench.runner import build_datasets
    from dinobench.resolve import resolve_task
    from dinobench.templates.feature_probe import FeatureProbeProtocol
    from dinobench.templates.trained_head import TrainedHeadConfig, TrainedHeadProtocol
    from dinobench.training.config import TrainConfig
    from dinobench.metrics.sharded import MergeableMetric, evaluate_sharded
    from dinobench.training.head import train_head
    from dinobench.typed_config import reader_options, resolve_section


def __getattr__(name: str) -> Any:
    """Import ``name`` from the module that implements it (once; then it is a plain module attribute)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dinobench.api' has no attribute {name!r}; a plugin uses only: "
                             f"{', '.join(__all__)}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
