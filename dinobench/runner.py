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
from typing import Any, Mapping

from dinobench.config import apply_options, load_config, parse_options, protocol_hash
from dinobench.errors import ConfigError, DinobenchError
from dinobench.registry import resolve_object
from dinobench.results import MainMetric, Result, environment, write_result

logger = logging.getLogger("dinobench")

DEFAULT_OUTPUT = "outputs"
#: ``backbone.*`` options that steer how a protocol trains the backbone, not how it is built
BACKBONE_TRAINING_KEYS = ("finetune", "layer_decay")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
    _features: dict[tuple[str, str], Any] = field(default_factory=dict)

    def features(self, split: str, kind: str = "cls"):
        """Features of ``kind`` of ``split`` (extracted once per run; see :mod:`dinobench.features`)."""
        if (split, kind) not in self._features:
            from dinobench.features import extract_features

            fcfg = self.cfg.get("features", {})
            start = time.perf_counter()
            self._features[split, kind] = extract_features(
                self.backbone, self.datasets[split], batch_size=int(fcfg.get("batch_size", 64)),
                num_workers=int(fcfg.get("num_workers", 0)), device=self.device,
                desc=f"{self.task} {split} {kind} features", kind=kind)
            suffix = "" if kind == "cls" else f"_{kind}"
            self.timings[f"features_{split}{suffix}_s"] = round(time.perf_counter() - start, 3)
        return self._features[split, kind]


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
    return apply_options(cfg, parse_options(options), where=f"task {task!r}")


def run(backbone: str, task: str, weights: str | None = None, data_root: str | None = None,
        output_dir: str | None = None, options: Mapping[str, Any] | list[str] | None = None,
        device: str = "cpu", seed: int = 0, save_predictions: bool = False) -> Result:
    """Evaluate ``backbone`` on ``task``; returns the written :class:`Result`.

    ``save_predictions``: protocols that can draw their predictions (dense tasks) write PNGs into
    ``ctx.predictions_dir``; they end up in ``<run>/predictions/`` and ``result.artifacts``.
    """
    from dinobench.plugin_manager import get_plugin_manager, get_registries

    t_start = time.perf_counter()
    registries = get_registries()
    backbone_spec = registries.backbones.get(backbone)  # fail fast on unknown names
    cfg = resolve_task(task, options)
    dataset_spec = registries.datasets.get(cfg["dataset"]["type"])
    protocol_spec = registries.protocols.get(cfg["protocol"]["type"])
    device = _check_device(device)
    if weights is not None:  # local path, URL (torch.hub cache) or HF repo id -> a local path
        from dinobench.backbones.loading import resolve_source

        weights = str(resolve_source(weights))

    # data layout is validated before any model is built
    datasets = resolve_object(dataset_spec.builder)(dict(cfg["dataset"]), data_root)
    seed_everything(seed)
    from dinobench.backbones import create_backbone

    constructor_kwargs = {k: v for k, v in cfg["backbone"].items() if k not in BACKBONE_TRAINING_KEYS}
    model = create_backbone(backbone, weights=weights, **constructor_kwargs)
    from dinobench.data.base import ClassificationDataset
    from dinobench.data.transforms import build_eval_transform

    transform = build_eval_transform(cfg["transform"], getattr(model, "image_mean", (0.485, 0.456, 0.406)),
                                     getattr(model, "image_std", (0.229, 0.224, 0.225)))
    for ds in datasets.values():  # dense datasets bring joint image+target transforms of their protocol
        if isinstance(ds, ClassificationDataset):
            ds.transform = transform
    output_dir = output_dir or os.environ.get("DINOBENCH_OUTPUT", DEFAULT_OUTPUT)
    ctx = RunContext(task=task, cfg=cfg, backbone=model, datasets=datasets, device=device, seed=seed)
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
    weights_sha = None
    if weights is not None:
        from dinobench.backbones.loading import weights_sha256

        weights_sha = weights_sha256(weights)
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
        environment=environment(device, "bfloat16-autocast" if device.startswith("cuda") else "float32"),
        timings=ctx.timings,
    )
    try:
        path = write_result(result, output_dir, predictions=ctx.predictions_dir)
    finally:
        if ctx.predictions_dir is not None and ctx.predictions_dir.exists():
            import shutil

            shutil.rmtree(ctx.predictions_dir, ignore_errors=True)
    get_plugin_manager().hook.dinobench_result_written(result=result, path=path)
    return result
