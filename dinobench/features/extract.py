"""Feature extraction: batched, ``inference_mode``, progress bar, on-disk cache; one place for every protocol.

:func:`load_or_extract` drives a :class:`~dinobench.features.cache.FeatureCache` entry: it computes the
missing chunks of a registered feature kind (:func:`feature_kind`). Under torchrun every rank extracts
a strided share of the missing chunks, rank 0 assembles, all ranks read the result (the cache folder
must be shared by the ranks). A kind with no entry of its own is cut from a cached entry of a kind it
declares in ``cut_from`` (same key otherwise) when there is one, and stored as its own entry naming its
source (``cls`` from ``cls4_avgpool``, see :mod:`dinobench.features.kinds`).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate
from tqdm.auto import tqdm

from dinobench.errors import ConfigError, DataError, DinobenchError, PluginError
from dinobench.features.cache import FeatureCache
from dinobench.features.keys import DEFAULT_CHUNK_SIZE, cache_root, check_dtype, chunk_plan, entry_payload
from dinobench.features.sharding import all_gather, broadcast, raise_if_any_failed, rank_world
from dinobench.features.targets import FeatureSet, Targets, concat_targets
from dinobench.features.builtin import BUILTIN_FEATURE_KINDS
from dinobench.registry import FeatureKindSpec, resolve_object
from dinobench.utils.precision import autocast_for, resolve_precision

logger = logging.getLogger("dinobench")


#: where a kind *name* is looked up: a registry (``in``, ``get``, ``names()``) or a plain name -> spec mapping
KindTable = Any


def feature_kind(kind: "str | FeatureKindSpec", kinds: KindTable | None = None) -> FeatureKindSpec:
    """The feature kind ``kind``: a spec is returned as is; a name is looked up in ``kinds`` (the run's feature-kind
    registry, which the runner resolved and passed in) or, without one, among the built-in kinds. An unknown name
    is a one-line ConfigError naming the known ones. The cache layer never asks the plugin manager."""
    if isinstance(kind, FeatureKindSpec):
        return kind
    table = kinds if kinds is not None else {spec.name: spec for spec in BUILTIN_FEATURE_KINDS}
    names = sorted(table.names() if hasattr(table, "names") else table)
    if not isinstance(kind, str) or kind not in table:
        close = difflib.get_close_matches(kind, names, n=3, cutoff=0.5) if isinstance(kind, str) else []
        hint = "; did you mean " + " or ".join(map(repr, close)) + "?" if close else ""
        known = "registered" if kinds is not None else "built-in; pass kinds= for a plugin's"
        raise ConfigError(f"unknown feature kind {kind!r}{hint} ({known}: {', '.join(names)})")
    return table.get(kind) if hasattr(table, "names") else table[kind]


def compute_features(model: nn.Module, images: Tensor, kind: "str | FeatureKindSpec" = "cls",
                     kinds: KindTable | None = None) -> Tensor:
    """One batch ``[B, *shape]`` of features of ``kind`` (see :func:`feature_kind`)."""
    spec = feature_kind(kind, kinds)
    kind = spec.name
    out = resolve_object(spec.compute)(model, images)
    if not isinstance(out, Tensor) or out.ndim < 1 or out.shape[0] != images.shape[0]:
        got = f"shape {list(out.shape)}" if isinstance(out, Tensor) else type(out).__name__
        raise PluginError(f"feature kind {kind!r} ({spec.source or spec.compute}) returned {got} for "
                          f"{images.shape[0]} images; compute(model, images) must return a Tensor [B, *shape]")
    return out


def _unwrap_worker_error(exc: DataError) -> DataError:
    """DataLoader workers re-raise with the whole traceback in the message; keep the last line."""
    message = str(exc)
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return DataError(last.split("DataError: ", 1)[-1])
    return exc


def _collate(samples: list[Any], desc: str) -> Any:
    """``default_collate``; samples whose targets do not stack are a one-line DataError."""
    try:
        return default_collate(samples)
    except (RuntimeError, TypeError) as exc:
        raise DataError(f"{desc}: samples do not batch ({str(exc).splitlines()[0]}); a dataset item must be "
                        f"(image, target) with fixed-size images and target an int, a fixed-shape array or a "
                        f"dict of those") from exc


@torch.inference_mode()
def _extract_chunks(model: nn.Module, dataset: Dataset, chunks: list[tuple[int, int]], *, batch_size: int,
                    num_workers: int, device: torch.device | str, desc: str, kind: FeatureKindSpec,
                    dtype: str = "float32", precision: str | None = None) -> Iterator[tuple[int, Tensor, Targets]]:
    """Yield ``(position in chunks, features, targets)`` per chunk, in order; batches never span chunks."""
    batches, owner = [], []
    for position, (start, end) in enumerate(chunks):
        for first in range(start, end, batch_size):
            batches.append(list(range(first, min(first + batch_size, end))))
            owner.append(position)
    if not batches:
        return
    device = torch.device(device)
    out_dtype = getattr(torch, dtype)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                        collate_fn=functools.partial(_collate, desc=desc),
                        pin_memory=device.type == "cuda", persistent_workers=False)
    autocast = autocast_for(resolve_precision(precision, device), device)
    model.eval().to(device)
    feats: list[Tensor] = []
    targets: list[Any] = []
    try:
        for index, (images, batch_targets) in enumerate(tqdm(loader, desc=desc, unit="batch", leave=False)):
            with autocast:
                out = compute_features(model, images.to(device, non_blocking=True), kind)
            if feats and out.shape[1:] != feats[0].shape[1:]:
                raise DataError(f"{desc}: feature kind {kind.name!r} gives per-sample shape {list(out.shape[1:])} "
                                f"and {list(feats[0].shape[1:])}; a cache entry needs one shape (fixed-size images)")
            feats.append(out.to(out_dtype).cpu())
            targets.append(batch_targets)
            if index == len(batches) - 1 or owner[index + 1] != owner[index]:
                yield owner[index], torch.cat(feats), concat_targets(targets, desc)
                feats, targets = [], []
    except DataError as exc:
        raise _unwrap_worker_error(exc) from None


def extract_features(model: nn.Module, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
                     device: torch.device | str = "cpu", desc: str = "features", kind: "str | FeatureKindSpec" = "cls",
                     dtype: str = "float32", precision: str | None = None,
                     kinds: KindTable | None = None) -> FeatureSet:
    """Features of ``kind`` (default: normalised CLS token) of every sample of ``dataset``, in memory, no cache.

    ``precision``: ``float32`` or ``bfloat16-autocast`` (None: the hardware's choice, :mod:`dinobench.utils.precision`).
    ``kinds``: where a kind name is looked up (:func:`feature_kind`).
    """
    kind = feature_kind(kind, kinds)
    check_dtype(dtype)
    if len(dataset) == 0:
        raise DataError(f"{desc}: the split is empty; nothing to extract")
    parts = list(_extract_chunks(model, dataset, [(0, len(dataset))], batch_size=batch_size,
                                 num_workers=num_workers, device=device, desc=desc, kind=kind, dtype=dtype,
                                 precision=precision))
    return FeatureSet(parts[0][1], targets=parts[0][2])


def load_or_extract(model: nn.Module, dataset: Dataset, *, payload: dict[str, Any] | None,
                    cache_dir: str | Path | None = None, batch_size: int = 64, num_workers: int = 0,
                    device: torch.device | str = "cpu", desc: str = "features", kind: "str | FeatureKindSpec" = "cls",
                    chunk_size: int = DEFAULT_CHUNK_SIZE, dtype: str = "float32",
                    precision: str | None = None, kinds: KindTable | None = None) -> tuple[FeatureSet, bool]:
    """Features of ``kind`` of ``dataset`` and whether they came from the cache.

    ``payload`` (JSON-able, see :func:`~dinobench.features.keys.backbone_key_payload`) identifies the
    features; None disables the disk cache. ``dtype``: storage (and returned) dtype, ``"float32"`` or
    ``"float16"`` (part of the key). ``precision``: the compute precision, as in :func:`extract_features`; with a
    ``payload`` it is the payload's ``precision`` (the key names what computed the features). Under
    torch.distributed the work is sharded over ranks and every rank gets all rows. ``kinds``: where a kind name
    is looked up (:func:`feature_kind`; the run passes its registry).
    """
    kind = feature_kind(kind, kinds)
    check_dtype(dtype)
    if len(dataset) == 0:
        raise DataError(f"{desc}: the split is empty; nothing to extract")
    plan = chunk_plan(len(dataset), int(chunk_size))
    if payload is not None and payload.get("precision"):
        precision = payload["precision"]
    options = dict(batch_size=batch_size, num_workers=num_workers, device=device, desc=desc, kind=kind, dtype=dtype,
                   precision=precision)
    rank, world = rank_world()
    if payload is None:
        if world == 1:
            return extract_features(model, dataset, **options), False
        return _extract_distributed_in_memory(model, dataset, plan, rank, world, options), False
    cache = FeatureCache(cache_dir if cache_dir is not None else cache_root(), entry_payload(payload, kind.name, dtype))
    with cache.lock() if rank == 0 else contextlib.nullcontext():  # rank 0 holds the lock for the job
        hit = cache.load() if rank == 0 else None
        if hit is None and rank == 0:
            hit = _cut_from_source(cache, model, payload, kind, dtype, len(dataset), int(chunk_size), desc)
        if broadcast(hit is not None):
            return (hit if rank == 0 else cache.load(verify=False)), True
        error: BaseException | None = None
        todo = None
        try:
            todo = cache.pending(plan) if rank == 0 else None
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks below
            error = exc
        raise_if_any_failed(error)
        todo = broadcast(todo)
        mine = todo[rank::world]
        try:
            for position, features, targets in _extract_chunks(model, dataset, [plan[i] for i in mine], **options):
                cache.write_chunk(*plan[mine[position]], features, targets)
        except Exception as exc:  # noqa: BLE001
            error = exc
        raise_if_any_failed(error)
        if rank == 0:
            try:
                cache.assemble(plan)
            except Exception as exc:  # noqa: BLE001
                error = exc
        raise_if_any_failed(error)  # also the barrier before the other ranks read
        result = cache.load(verify=False)
        if result is None:
            raise DinobenchError(f"{cache.dir}: feature cache vanished right after it was written; "
                                 f"is another process deleting it?")
        return result, False


def _cut_from_source(cache: FeatureCache, model: nn.Module, payload: dict[str, Any], kind: FeatureKindSpec, dtype: str,
                     num_rows: int, block_rows: int, desc: str) -> FeatureSet | None:
    """``cache``'s features cut from a finished entry of a kind ``kind`` can be cut from (same key otherwise),
    stored as ``cache``'s entry; None when there is none. Caller holds ``cache``'s lock (order: ``kind`` ->
    source; a plugin declaring cuts both ways between two kinds could deadlock two repairing processes)."""
    root = cache.dir.parent
    for source_kind, plan_cut in kind.cut_from.items():
        source = FeatureCache(root, entry_payload(payload, source_kind, dtype))
        if not source.manifest.is_file():  # absent, or still being extracted: extract ``kind`` ourselves
            continue
        with source.lock():  # a concurrent repair of the source finishes first
            full = source.load()
        if full is None or len(full.features) != num_rows:
            continue
        try:
            cut = resolve_object(plan_cut)(model, tuple(full.features.shape[1:]))
        except ValueError as exc:
            logger.warning("dinobench: warning: %s: not cutting %s from %s (%s)", desc, kind.name, source.dir, exc)
            continue
        cache.derive(source, full, cut, block_rows)
        logger.info("dinobench: %s: cut from the cached %s features %s (%s), no forward", desc, source_kind,
                    source.dir, cut.info)
        return cache.load(verify=False)
    return None


def _extract_distributed_in_memory(model: nn.Module, dataset: Dataset, plan: list[tuple[int, int]], rank: int,
                                   world: int, options: dict[str, Any]) -> FeatureSet:
    """No cache, several ranks: each extracts ``plan[rank::world]``; the chunks are all-gathered in order."""
    mine = list(range(len(plan)))[rank::world]
    parts, error = {}, None
    try:
        for position, features, targets in _extract_chunks(model, dataset, [plan[i] for i in mine], **options):
            parts[mine[position]] = (features, targets)
    except Exception as exc:  # noqa: BLE001
        error = exc
    raise_if_any_failed(error)
    merged = {index: part for rank_parts in all_gather(parts) for index, part in rank_parts.items()}
    ordered = [merged[i] for i in range(len(plan))]
    return FeatureSet(torch.cat([features for features, _ in ordered]),
                      targets=concat_targets([targets for _, targets in ordered], options["desc"]))
