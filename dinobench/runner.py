"""Run a task: resolved config (:mod:`dinobench.resolve`) -> named datasets -> backbone -> protocol -> metrics ->
result record.

Everything a user can get wrong (names, data layout of every dataset, weights path, config keys and
types) is checked before the first forward pass, and nothing is written unless the run succeeds.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from dinobench.backbones import create_backbone
from dinobench.backbones.contract import backbone_normalisation
from dinobench import identity
from dinobench.backbones.loading import resolve_source, weights_sha256
from dinobench.config import BACKBONE_PROTOCOL_KEYS
from dinobench.context import RunContext
from dinobench.data.base import ClassificationDataset
from dinobench.data.transforms import build_eval_transform
from dinobench.figures import dataset_pca_figures
from dinobench.errors import ConfigError, DataError, DinobenchError, PluginError
from dinobench.features import backbone_key_payload, cache_root
from dinobench.plugin_manager import _distribution_of, get_plugin_manager, get_registries
from dinobench.protocol import DatasetLike, Protocol, ProtocolResult
from dinobench.registry import resolve_object
from dinobench.resolve import _resolve, dataset_entries, protocol_class, recipe_of, with_head
from dinobench.tasks import find_task
from dinobench.results import MainMetric, Result, environment, safe_component, write_result
from dinobench.utils import distributed as ddp
from dinobench.utils.paths import check_writable, output_root
from dinobench.utils.precision import resolve_precision
from dinobench.utils.seeding import seed_everything


def build_datasets(cfg: Mapping[str, Any], data_root: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """Every named dataset of the task, layout-validated by its reader: (name -> dataset, name -> type).

    Short form ``dataset=dict(type=...)``: the reader's splits are the names. ``datasets=dict(<name>=
    dict(type=..., from_split=...))``: each name takes the returned split ``from_split`` (default: the name) of
    its reader (``split``, like every other key, is the reader's own option); entries with the same reader
    config share one read.
    """
    registries = get_registries()
    entries = dataset_entries(cfg)
    if entries is None:
        spec = registries.datasets.get(cfg["dataset"]["type"])
        splits = resolve_object(spec.builder)(dict(cfg["dataset"]), data_root)
        named, types = dict(splits), {name: spec.name for name in splits}
    else:
        named, types, reads = {}, {}, {}
        for name, entry in entries.items():
            split = str(entry.pop("from_split", name))
            spec = registries.datasets.get(entry["type"])
            key = json.dumps(entry, sort_keys=True, default=str)
            if key not in reads:
                reads[key] = resolve_object(spec.builder)(dict(entry), data_root)
            if split not in reads[key]:
                raise ConfigError(f"datasets.{name}: dataset {spec.name!r} has no split {split!r} "
                                  f"(it has: {', '.join(sorted(reads[key]))}); set datasets.{name}.from_split")
            named[name], types[name] = reads[key][split], spec.name
    for name, dataset in named.items():
        if not isinstance(dataset, DatasetLike):
            raise PluginError(f"dataset {types[name]!r} ({name}): its reader returned {type(dataset).__name__}, "
                              "which lacks fingerprint / describe() / __len__ / __getitem__")
    return named, types


def _check_device(device: str) -> str:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DinobenchError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
    if not (device == "cpu" or device.startswith("cuda")):
        raise DinobenchError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    return device


def run(backbone: str | None, task: str | None, weights: str | None = None, data_root: str | None = None,
        output_dir: str | None = None, options: Mapping[str, Any] | list[str] | None = None,
        device: str = "cpu", seed: int = 0, save_predictions: bool = False, head: str | None = None,
        head_weights: str | None = None, precision: str | None = None) -> Result:
    """Evaluate ``backbone`` on ``task``; returns the written :class:`Result`.

    ``head`` / ``head_weights``: evaluate a released head (``dinobench list heads``) from a local file instead
    of training one; ``backbone`` and ``task`` then default to the head's.

    ``precision``: feature-extraction precision (None: ``$DINOBENCH_PRECISION``, else float32 as the official
    evaluations), ``auto`` (bf16 autocast on CUDA and native-bf16 CPUs), ``float32`` or ``bfloat16``; recorded.

    ``save_predictions``: protocols that can draw their predictions (dense tasks) write PNGs into
    ``ctx.predictions_dir``; they end up in ``<run>/predictions/`` and ``result.artifacts``.
    Under ``torchrun`` the ranks share feature extraction and only rank 0 writes the record.
    """
    # under torchrun (WORLD_SIZE > 1): join the process group, gloo when the work is on CPU tensors
    owns_group = ddp.init_from_env(backend=None if _check_device(device).startswith("cuda") else "gloo")
    ok = False
    try:
        backbone, task, options = with_head(head, head_weights, backbone, task, options)
        result = _run(backbone, task, weights, data_root, output_dir, options, device, seed, save_predictions,
                      head, precision)
        ok = True
        return result
    finally:
        if owns_group:
            ddp.shutdown(synchronize=ok)  # barrier first on success: gloo aborts when a peer leaves early


def _run(backbone: str, task: str, weights: str | None, data_root: str | None, output_dir: str | None,
         options: Mapping[str, Any] | list[str] | None, device: str, seed: int, save_predictions: bool,
         head: str | None = None, precision: str | None = None) -> Result:
    t_start = time.perf_counter()
    registries = get_registries()
    backbone_spec = registries.backbones.get(backbone)  # fail fast on unknown names
    source = find_task(task, registries)  # a registered name or a task file (whose name is its stem)
    cfg, task = _resolve(source, options, backbone), source.name
    protocol_cls = protocol_class(cfg["protocol"]["type"])
    protocol_spec = registries.protocols.get(cfg["protocol"]["type"])
    protocol = protocol_cls(cfg["protocol"])  # value checks before any data is read
    device = _check_device(device)
    precision = resolve_precision(precision, device)
    if device == "cuda" and ddp.world_size() > 1:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"  # torchrun: this rank's GPU
    if weights is not None:  # local path, URL (torch.hub cache) or HF repo id -> a local path
        weights = str(resolve_source(weights))

    files = identity.input_files(cfg, protocol_cls)
    datasets, dataset_types = build_datasets(cfg, data_root)  # every layout validated before any model is built
    missing = [name for name in protocol_cls.datasets if name not in datasets]
    if missing:
        raise ConfigError(f"task {task!r}: protocol {protocol_cls.name!r} needs dataset {missing[0]!r} "
                          f"(the task has: {', '.join(sorted(datasets))})")
    output_dir = str(check_writable(output_root(output_dir), "the results folder",
                                    "pass --output DIR (or $DINOBENCH_OUTPUT) that you can write to"))
    if cfg["features"]["cache"]:  # typed by resolve_task; fail now, not after the forward passes
        check_writable(cache_root(cfg["features"]), "the feature cache",
                       "set $DINOBENCH_CACHE / features.cache_dir=DIR to a writable folder, or features.cache=false")
    seed_everything(seed)
    constructor_kwargs = {k: v for k, v in cfg["backbone"].items() if k not in BACKBONE_PROTOCOL_KEYS}
    model = create_backbone(backbone, weights=weights, **constructor_kwargs)
    mean, std = backbone_normalisation(model)
    cached_transforms = {}  # datasets whose transform is a function of the task's transform section: disk-cached
    for name, ds in datasets.items():  # dense datasets bring joint image+target transforms of their protocol
        if isinstance(ds, ClassificationDataset):
            ds.transform = build_eval_transform(cfg["transform"], mean, std)
        elif callable(getattr(ds, "eval_transform", None)):  # e.g. image + mask pooled to the patch grid
            ds.transform = ds.eval_transform(cfg["transform"], mean, std, model)
        else:
            continue
        cached_transforms[name] = ds.transform
    weights_sha = weights_sha256(weights) if weights is not None else None
    cache_payload = backbone_key_payload(
        backbone, weights_sha, seed, constructor_kwargs, cfg["transform"], mean, std, precision,
        identity=identity.backbone_identity(backbone_spec, _distribution_of(backbone_spec.source)
                                            if backbone_spec.source else ""))
    run_identity = identity.RunIdentity.of(cfg, protocol_cls, datasets, files)
    ctx = RunContext(task=task, cfg=cfg, backbone=model, datasets=datasets, device=device, seed=seed,
                     precision=precision, cache_payload=cache_payload, output_dir=Path(output_dir),
                     backbone_name=backbone, weights_sha256=weights_sha, dataset_types=dataset_types,
                     feature_kinds=registries.feature_kinds, identity=run_identity, eval_transforms=cached_transforms)
    if save_predictions:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        ctx.predictions_dir = Path(tempfile.mkdtemp(prefix=".predictions-", dir=output_dir))
    try:
        t_protocol = time.perf_counter()
        outcome = protocol.run(ctx)
        if not isinstance(outcome, ProtocolResult):
            raise PluginError(f"protocol {protocol_cls.name!r} ({protocol_spec.source}): run() returned "
                              f"{type(outcome).__name__}, expected a dinobench.protocol.ProtocolResult")
        ctx.timings["protocol_s"] = round(time.perf_counter() - t_protocol, 3)
        if ctx.predictions_dir is not None and ddp.rank() == 0:  # every task with images: PCA maps of its features
            dataset_pca_figures(model, datasets, ctx.predictions_dir, transform_cfg=cfg["transform"], device=device)
        ctx.timings["total_s"] = round(time.perf_counter() - t_start, 3)
        result = _record(task, cfg, protocol_cls, protocol_spec, backbone, backbone_spec, model, weights,
                         weights_sha, seed, outcome, datasets, dataset_types, data_root, device, precision, ctx)
        result.recipe = recipe_of(source, cfg, backbone, head)
        given = ctx.input_files.get(registries.heads.get(head).weights_key if head else "protocol.head_weights")
        if given:  # the record names the evaluated head (released or exported); its digest is in the hash
            result.head = {"hub": head or "", "path": given["path"], "sha256": given["sha256"]}
        if ddp.rank() > 0:  # torchrun: every rank computed the same metrics; rank 0 writes the record
            return result
        path = _write_or_keep(result, output_dir, ctx.predictions_dir, outcome.head)
    finally:  # write_result moved the predictions into the run folder; anything left is a leftover
        if ctx.predictions_dir is not None:
            shutil.rmtree(ctx.predictions_dir, ignore_errors=True)
    get_plugin_manager().hook.dinobench_result_written(result=result, path=path)
    return result


def _write_or_keep(result: Result, output_dir: str, predictions: Path | None, head: Any) -> Path:
    """:func:`write_result`; when the disk refuses it (full, read-only, removed) the record goes to a file in the
    temp folder and the error line names it and shows the main metric: the compute is never lost."""
    try:
        return write_result(result, output_dir, predictions=predictions, head=head)
    except OSError as exc:
        kept = None
        try:
            handle, kept = tempfile.mkstemp(prefix=f"dinobench-unsaved-{safe_component(result.task)}-",
                                            suffix=".json")
            with os.fdopen(handle, "w") as fh:
                json.dump(result.to_dict(), fh, indent=2)
        except OSError:
            kept = None
        where = f"the record is kept in {kept}" if kept else "the record could not be kept anywhere"
        main = result.main_metric
        raise DataError(f"{output_dir}: writing the result failed ({exc.strerror or exc}); {where} "
                        f"({main.name} = {main.value:.4f}); free space or pass --output DIR and copy it there") from None


def _record(task: str, cfg: dict[str, Any], protocol_cls: type[Protocol], protocol_spec: Any, backbone: str,
            backbone_spec: Any, model: Any, weights: str | None, weights_sha: str | None, seed: int,
            outcome: ProtocolResult, datasets: dict[str, Any], dataset_types: dict[str, str],
            data_root: str | None, device: str, precision: str, ctx: RunContext) -> Result:
    """The result record of one run (not yet written)."""
    metrics = outcome.metrics
    main_name = outcome.main_metric
    run_identity = ctx.identity
    types = sorted(set(dataset_types.values()))
    return Result(
        task=task,
        protocol=protocol_cls.name or protocol_spec.name,
        protocol_version=str(protocol_cls.version),
        protocol_plugin=protocol_spec.source,
        protocol_hash=run_identity.protocol_hash,
        backbone=backbone,
        weights=str(Path(weights).resolve()) if weights is not None else "random-init",
        weights_sha256=weights_sha,
        seed=seed,
        metrics=metrics,
        main_metric=MainMetric(main_name, metrics[main_name], outcome.direction(main_name)),
        config=cfg,
        dataset={"name": "+".join(types), "root": str(data_root) if data_root else None,
                 "fingerprint": run_identity.dataset_fingerprint, "splits": {k: ds.describe() for k, ds in datasets.items()},
                 "types": dataset_types},
        backbone_config={
            "family": backbone_spec.family, "source": backbone_spec.source, "overrides": cfg["backbone"],
            "embed_dim": int(model.embed_dim), "patch_size": int(model.patch_size),
            "n_storage_tokens": int(model.n_storage_tokens),
            "params": int(sum(p.numel() for p in model.parameters())),
        },
        environment=environment(device, precision),
        timings=ctx.timings,
        higher_is_better=outcome.directions(),
        tables=outcome.tables,
        runtime_keys=list(run_identity.runtime_keys),
        input_files=dict(ctx.input_files),
    )
