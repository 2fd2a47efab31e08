"""THE dinobench extension contract: every hook a plugin may implement.

A plugin is any module or object with functions decorated by :data:`hookimpl` whose names
match the specs below. First-party features (the DINOv3 backbones, the digits/ImageNet
readers, the kNN protocol, the shipped task configs) are plugins registered through exactly
these hooks; third-party packages add theirs with an entry point in group ``"dinobench"``::

    [project.entry-points.dinobench]
    myplugin = "my_package.dinobench_plugin"

Hooks are called with keyword arguments; implementations may accept any subset of them. The types a
plugin implements against (:class:`~dinobench.protocol.Protocol`, ``ProtocolResult``, ``DatasetLike``, ``RunContext``,
the engine, ...) come from :mod:`dinobench.api`, the one other module a plugin imports; this module names them
for type checkers only (pytest's way), so it imports nothing of dinobench at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

if TYPE_CHECKING:
    from dinobench.registry import (BackboneRegistry, CommandRegistry, DatasetRegistry, FeatureKindRegistry,
                                    HeadLayoutRegistry, HeadRegistry, OptimizerRegistry, ProtocolRegistry, ScheduleRegistry,
                                    SyntheticWriterRegistry, TaskRegistry)
    from dinobench.results import Result

PROJECT_NAME = "dinobench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def dinobench_register_backbones(registry: "BackboneRegistry") -> None:
    """Add backbones: ``registry.add(name, factory, family=..., patch_size=..., embed_dim=...)``.

    ``factory(**overrides)`` returns an ``nn.Module`` honouring the backbone contract
    (:mod:`dinobench.backbones.contract`: ``embed_dim``, ``patch_size``, ``n_storage_tokens``,
    ``forward_features``, ``get_intermediate_layers``; optionally ``n_blocks`` and ``feature_info``, one
    ``{"index", "module", "num_chs", "reduction"}`` dict per level, which necks read for channels and
    strides). ``check_backbone(model, name, images)`` checks a model against it. Pass the factory as
    ``"module:attr"`` to keep listing cheap; a ``TINY_OVERRIDES`` dict in the factory's module lets the
    registry-wide tests build it small.
    """


@hookspec
def dinobench_register_datasets(registry: "DatasetRegistry") -> None:
    """Add dataset readers: ``registry.add(name, "module:builder", description=...)``.

    ``builder(cfg: dict, data_root: str | None) -> dict[split, dataset]`` validates the on-disk layout
    before returning (raise :class:`dinobench.errors.DataError` with one clear line). Every dataset
    honours :class:`dinobench.protocol.DatasetLike` (``fingerprint``, ``describe()``, ``__len__``,
    ``__getitem__``). A task names them with ``dataset=dict(type=...)`` (its splits become the names) or
    ``datasets=dict(<name>=dict(type=..., from_split=...), ...)`` (any number of named datasets).
    """


@hookspec
def dinobench_register_protocols(registry: "ProtocolRegistry") -> None:
    """Add evaluation protocols: ``registry.add(name, "module:ProtocolClass", description=...)``.

    The class subclasses :class:`dinobench.protocol.Protocol`: a ``Config`` dataclass (the protocol's
    defaults, the one place they live), ``version`` (bump it whenever a change could move the numbers:
    results of different versions are never compared), ``runtime_keys``/``eval_keys`` (keys that do not
    change a result / only change evaluation), ``datasets`` (the named datasets it needs) and
    ``run(ctx: dinobench.context.RunContext) -> dinobench.protocol.ProtocolResult``. The registry checks
    this contract when the entry is first resolved.
    """


@hookspec
def dinobench_register_tasks(registry: "TaskRegistry") -> None:
    """Add tasks: ``registry.add(name, config_path_or_dict)`` or ``registry.add_config_dir(dir)``.

    A task config (mmengine format, ``_base_`` allowed) has ``protocol=dict(type=...)`` stating only the
    keys that differ from the protocol's defaults, and either ``dataset=dict(type=...)`` or
    ``datasets=dict(<name>=dict(type=..., from_split=...), ...)`` naming registered readers.
    """


@hookspec
def dinobench_register_feature_kinds(registry: "FeatureKindRegistry") -> None:
    """Add feature kinds: ``registry.add(name, compute, cut_from={source_kind: plan}, description=...)``.

    ``compute(model, images) -> Tensor [B, *shape]`` (one fixed per-sample shape of any rank, e.g.
    ``[D]`` or ``[h, w, D]``) runs under ``torch.inference_mode`` on the backbone's device; the cache
    stores ``[N, *shape]`` under the kind's name. ``cut_from`` (optional) names cached kinds this one
    can be made from without a forward: ``plan(model, source_shape) -> dinobench.features.kinds.FeatureCut``.
    Pass both as ``"module:attr"`` to keep listing cheap; a name must be new.
    """


@hookspec
def dinobench_register_commands(registry: "CommandRegistry") -> None:
    """Add CLI subcommands: ``registry.add(name, configure="module:attr", run="module:attr", help=...)``.

    ``configure(parser: argparse.ArgumentParser) -> None`` adds the command's arguments (imported only when
    the command is used, so ``dinobench list`` stays fast); ``run(args: argparse.Namespace) -> int`` is the
    exit code. A :class:`dinobench.errors.DinobenchError` it raises is printed as one line (exit 2).
    """


@hookspec
def dinobench_register_heads(registry: "HeadRegistry") -> None:
    """Add released heads: ``registry.add(name, backbone=..., tasks=[...], options={dotted key: value}, file=...)``.

    ``dinobench run --head NAME --head-weights FILE`` then evaluates the head without training: the task's config
    gets ``options`` (the head's architecture) and ``weights_key`` = FILE; the record names the head and its
    sha256, and the file's digest is part of the protocol hash, so only runs of the same head compare.
    """


@hookspec
def dinobench_register_schedules(registry: "ScheduleRegistry") -> None:
    """Add learning-rate schedules: ``registry.add(name, "module:fn", defaults={key: default}, description=...)``.

    ``fn(cfg, base_lr, iteration, total) -> {"lr": float, ...}`` is a pure function of the step (exact resume);
    ``cfg`` holds ``warmup_iters`` / ``warmup_ratio`` and the schedule's own keys, filled from ``defaults``. A task
    then sets ``train.scheduler=dict(type=name, ...)``; a name the engine already has is refused.
    """


@hookspec
def dinobench_register_optimizers(registry: "OptimizerRegistry") -> None:
    """Add optimizers: ``registry.add(name, "module:build", defaults={"lr": ..., ...}, description=...)``.

    ``build(param_groups, cfg) -> torch.optim.Optimizer``; the groups carry ``lr_multiplier`` / ``wd_multiplier``
    that the engine applies each step. A task then sets ``train.optimizer=dict(type=name, ...)``.
    """


@hookspec
def dinobench_register_synthetic_writers(registry: "SyntheticWriterRegistry") -> None:
    """Add procedural dataset writers in a reader's real layout: ``registry.add(kind, "module:writer", size=64,
    fixed={...}, description=...)``; ``python -m dinobench.synthetic KIND OUT_DIR`` runs
    ``writer(out_dir, n_train=, n_val=, size=, seed=, **fixed)`` and prints the data root it returns. Same
    arguments, byte-identical files (seed every sample).
    """


@hookspec
def dinobench_register_head_layouts(registry: "HeadLayoutRegistry") -> None:
    """Add head export layouts: ``registry.add(layout, "module:files", description=...)``.

    A protocol that trains a head returns ``ProtocolResult(head=TrainedHead(state, layout, config))``; the run keeps
    it beside its record, and ``dinobench export --run RUN --output DIR`` writes ``files(state, config)`` (file
    name -> text, or an object for ``torch.save``): the files the head's official tools read.
    """


@hookspec
def dinobench_result_written(result: "Result", path: Path) -> None:
    """Called after a run wrote ``path`` (result.json) atomically, e.g. to upload it."""
