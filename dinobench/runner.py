"""Resolve a task config -> datasets -> backbone -> protocol -> metrics -> result record.

Everything a user can get wrong (names, data layout, weights path, config keys) is checked
before the first forward pass, and nothing is written unless the run succeeds.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from dinobench.config import BACKBONE_PROTOCOL_KEYS, apply_options, load_config, parse_options, protocol_hash
from dinobench.errors import ConfigError, DinobenchError
from dinobench.registry import resolve_object
from dinobench.results import MainMetric, Result, environment, write_result
from dinobench.utils.seeding import seed_everything
from dinobench.backbones.contract import backbone_normalisation

if TYPE_CHECKING:
    from dinobench.features import FeatureSet

logger = logging.getLogger("dinobench")

DEFAULT_OUTPUT = "outputs"
#: ``features.*`` keys every task accepts: on-disk feature cache switch, folder (None: $DINOBENCH_CACHE or
#: ~/.cache/dinobench/features) and rows per cache chunk (None: 4096)
FEATURE_CACHE_DEFAULTS = {"cache": True, "cache_dir": None, "chunk_size": None}


@dataclass
class RunContext:
    """What a protocol sees: the resolved config, datasets (with transforms), backbone, device."""

    task: str
    cfg: dict[str, Any]
    backbone: Any
    datasets: dict[str, Any]
    device: str
    seed: int
    timings: dict[str, float] = field(default_factory=dict)
    predictions_dir: Path | None = None  # set by --save-predictions: protocols write figures here
    output_dir: Path | None = None  # the results folder (head-training runs live under <output>/.runs/)
    backbone_name: str | None = None  # registry name of the backbone
    weights_sha256: str | None = None  # None for random init
    #: run-wide part of the feature-cache key (:func:`dinobench.feature_cache.backbone_key_payload`); None: no disk cache
    cache_payload: dict[str, Any] | None = None
    #: split -> the eval transform the runner set; a split whose transform was replaced is not disk-cached
    eval_transforms: dict[str, Any] = field(default_factory=dict)
    _features: dict[tuple[str, str], Any] = field(default_factory=dict)

    @property
    def image_mean(self) -> tuple[float, ...]:
        """The backbone's input normalisation mean (what the eval transform uses)."""
        return backbone_normalisation(self.backbone)[0]

    @property
    def image_std(self) -> tuple[float, ...]:
        """The backbone's input normalisation std."""
        return backbone_normalisation(self.backbone)[1]

    def transformed_features(self, split: str, kind: str, transform: Any, desc: str) -> "FeatureSet":
        """Features of ``split`` under another ``transform`` (e.g. a random augmentation): extracted every
        call and never disk-cached; the split's own transform is restored afterwards."""
        dataset = self.datasets[split]
        original, dataset.transform = dataset.transform, transform
        try:
            return self._load_or_extract(split, kind, None, desc)[0]
        finally:
            dataset.transform = original

    def features(self, split: str, kind: str = "cls") -> "FeatureSet":
        """Features of ``kind`` of ``split``: extracted once per run, and once per key on disk
        (see :mod:`dinobench.features`; ``cls`` is cut from a cached ``cls4_avgpool`` entry when there is
        one); ``timings`` records whether they came from the cache (1.0 also for such a cut)."""
        if (split, kind) not in self._features:
            start = time.perf_counter()
            self._features[split, kind], cached = self._load_or_extract(
                split, kind, self._cache_payload(split), f"{self.task} {split} {kind} features")
            suffix = "" if kind == "cls" else f"_{kind}"
            self.timings[f"features_{split}{suffix}_s"] = round(time.perf_counter() - start, 3)
            self.timings[f"features_{split}{suffix}_cached"] = 1.0 if cached else 0.0
        return self._features[split, kind]

    def _load_or_extract(self, split: str, kind: str, payload: dict[str, Any] | None,
                         desc: str) -> tuple["FeatureSet", bool]:
        """:func:`dinobench.features.load_or_extract` of ``split`` with the task's ``features.*`` settings."""
        from dinobench.features import DEFAULT_CHUNK_SIZE, cache_root, load_or_extract

        fcfg = self.cfg.get("features", {})
        return load_or_extract(
            self.backbone, self.datasets[split], payload=payload,
            cache_dir=cache_root(fcfg) if payload is not None else None,
            batch_size=int(fcfg.get("batch_size", 64)), num_workers=int(fcfg.get("num_workers", 0)),
            device=self.device, desc=desc, kind=kind, chunk_size=int(fcfg.get("chunk_size") or DEFAULT_CHUNK_SIZE))

    def _cache_payload(self, split: str) -> dict[str, Any] | None:
        """Key payload of ``split`` (feature kind added by the cache), or None when it must not be cached."""
        enabled = self.cfg.get("features", {}).get("cache", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"features.cache must be true or false, got {enabled!r}")
        dataset = self.datasets[split]
        fingerprint = getattr(dataset, "cache_fingerprint", None) or getattr(dataset, "fingerprint", None)
        if (not enabled or self.cache_payload is None or not fingerprint
                or split not in self.eval_transforms or self.eval_transforms[split] is not dataset.transform):
            return None
        return {**self.cache_payload, "dataset": {"type": self.cfg.get("dataset", {}).get("type"),
                                                  "fingerprint": fingerprint, "split": split, "size": len(dataset)}}


def _check_device(device: str) -> str:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DinobenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise DinobenchError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    return device


def resolve_task(task: str, options: Mapping[str, Any] | list[str] | None) -> dict[str, Any]:
    """The task's resolved config with ``options`` applied (validated)."""
    from dinobench.plugin_manager import get_registries

    spec = get_registries().tasks.get(task)
    cfg = load_config(spec.config)
    for section in ("dataset", "protocol"):
        if not isinstance(cfg.get(section), dict) or "type" not in cfg[section]:
            raise ConfigError(f"task {task!r} ({spec.config}): config needs {section}=dict(type=...)")
    cfg.setdefault("backbone", {})
    cfg.setdefault("features", {})
    cfg.setdefault("transform", {})
    for key, default in FEATURE_CACHE_DEFAULTS.items():  # runtime-only: they never change a result
        cfg["features"].setdefault(key, default)
    return apply_options(cfg, parse_options(options), where=f"task {task!r}")


def _backbone_identity(spec: Any) -> dict[str, Any]:
    """What builds a registered backbone (factory, default args, providing package): part of the cache key."""
    from dinobench.plugin_manager import _distribution_of

    factory = spec.factory if isinstance(spec.factory, str) else (
        f"{getattr(spec.factory, '__module__', '?')}:{getattr(spec.factory, '__qualname__', repr(spec.factory))}")
    return {"factory": factory, "defaults": dict(getattr(spec, "defaults", None) or {}),
            "provider": _distribution_of(spec.source) if spec.source else ""}


def run(backbone: str, task: str, weights: str | None = None, data_root: str | None = None,
        output_dir: str | None = None, options: Mapping[str, Any] | list[str] | None = None,
        device: str = "cpu", seed: int = 0, save_predictions: bool = False) -> Result:
    """Evaluate ``backbone`` on ``task``; returns the written :class:`Result`.

    ``save_predictions``: protocols that can draw their predictions (dense tasks) write PNGs into
    ``ctx.predictions_dir``; they end up in ``<run>/predictions/`` and ``result.artifacts``.
    Under ``torchrun`` the ranks share feature extraction and only rank 0 writes the record.
    """
    from dinobench.training import distributed as ddp

    # under torchrun (WORLD_SIZE > 1): join the process group, gloo when the work is on CPU tensors
    owns_group = ddp.init_from_env(backend=None if _check_device(device).startswith("cuda") else "gloo")
    ok = False
    try:
        result = _run(backbone, task, weights, data_root, output_dir, options, device, seed, save_predictions)
        ok = True
        return result
    finally:
        if owns_group:
            ddp.shutdown(synchronize=ok)  # barrier first on success: gloo aborts when a peer leaves early


def _run(backbone: str, task: str, weights: str | None, data_root: str | None, output_dir: str | None,
         options: Mapping[str, Any] | list[str] | None, device: str, seed: int, save_predictions: bool) -> Result:
    from dinobench.plugin_manager import get_plugin_manager, get_registries

    t_start = time.perf_counter()
    registries = get_registries()
    backbone_spec = registries.backbones.get(backbone)  # fail fast on unknown names
    cfg = resolve_task(task, options)
    dataset_spec = registries.datasets.get(cfg["dataset"]["type"])
    protocol_spec = registries.protocols.get(cfg["protocol"]["type"])
    device = _check_device(device)
    from dinobench.training import distributed as ddp

    if device == "cuda" and ddp.world_size() > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # torchrun: this rank's GPU
    if weights is not None:  # local path, URL (torch.hub cache) or HF repo id -> a local path
        from dinobench.backbones.loading import resolve_source

        weights = str(resolve_source(weights))

    # data layout is validated before any model is built
    datasets = resolve_object(dataset_spec.builder)(dict(cfg["dataset"]), data_root)
    seed_everything(seed)
    from dinobench.backbones import create_backbone

    constructor_kwargs = {k: v for k, v in cfg["backbone"].items() if k not in BACKBONE_PROTOCOL_KEYS}
    model = create_backbone(backbone, weights=weights, **constructor_kwargs)
    from dinobench.data.base import ClassificationDataset
    from dinobench.data.transforms import build_eval_transform

    mean, std = backbone_normalisation(model)
    transform = build_eval_transform(cfg["transform"], mean, std)
    for ds in datasets.values():  # dense datasets bring joint image+target transforms of their protocol
        if isinstance(ds, ClassificationDataset):
            ds.transform = transform
    output_dir = output_dir or os.environ.get("DINOBENCH_OUTPUT", DEFAULT_OUTPUT)
    weights_sha = None
    if weights is not None:
        from dinobench.backbones.loading import weights_sha256

        weights_sha = weights_sha256(weights)
    precision = "bfloat16-autocast" if device.startswith("cuda") else "float32"
    from dinobench.features import backbone_key_payload

    cache_payload = backbone_key_payload(
        backbone, weights_sha, seed, constructor_kwargs, cfg["transform"], mean, std, precision,
        identity=_backbone_identity(backbone_spec))
    ctx = RunContext(task=task, cfg=cfg, backbone=model, datasets=datasets, device=device, seed=seed,
                     cache_payload=cache_payload, output_dir=Path(output_dir), backbone_name=backbone,
                     weights_sha256=weights_sha,
                     eval_transforms={k: ds.transform for k, ds in datasets.items()
                                      if isinstance(ds, ClassificationDataset)})
    if save_predictions:
        import tempfile

        Path(output_dir).mkdir(parents=True, exist_ok=True)
        ctx.predictions_dir = Path(tempfile.mkdtemp(prefix=".predictions-", dir=output_dir))
    protocol = resolve_object(protocol_spec.cls)(dict(cfg["protocol"]))
    t_protocol = time.perf_counter()
    outcome = protocol.run(ctx)
    ctx.timings["protocol_s"] = round(time.perf_counter() - t_protocol, 3)
    ctx.timings["total_s"] = round(time.perf_counter() - t_start, 3)

    metrics = {k: float(v) for k, v in outcome["metrics"].items()}
    main_name = outcome["main_metric"]
    fingerprint = "+".join(ds.fingerprint for _, ds in sorted(datasets.items()))
    result = Result(
        task=task,
        protocol=protocol_spec.name,
        protocol_version=str(protocol_spec.version),
        protocol_plugin=protocol_spec.source,
        protocol_hash=protocol_hash(cfg, fingerprint),
        backbone=backbone,
        weights=str(Path(weights).resolve()) if weights is not None else "random-init",
        weights_sha256=weights_sha,
        seed=seed,
        metrics=metrics,
        main_metric=MainMetric(main_name, metrics[main_name], bool(outcome.get("higher_is_better", True))),
        config=cfg,
        dataset={"name": dataset_spec.name, "root": str(data_root) if data_root else None,
                 "fingerprint": fingerprint, "splits": {k: ds.describe() for k, ds in datasets.items()}},
        backbone_config={
            "family": backbone_spec.family, "source": backbone_spec.source, "overrides": cfg["backbone"],
            "embed_dim": int(model.embed_dim), "patch_size": int(model.patch_size),
            "n_storage_tokens": int(model.n_storage_tokens),
            "params": int(sum(p.numel() for p in model.parameters())),
        },
        environment=environment(device, precision),
        timings=ctx.timings,
    )
    try:
        if ddp.rank() > 0:  # torchrun: every rank computed the same metrics; rank 0 writes the record
            return result
        path = write_result(result, output_dir, predictions=ctx.predictions_dir)
    finally:  # write_result moved the predictions into the run folder; anything left is a leftover
        if ctx.predictions_dir is not None:
            import shutil

            shutil.rmtree(ctx.predictions_dir, ignore_errors=True)
    get_plugin_manager().hook.dinobench_result_written(result=result, path=path)
    return result
