"""Feature extraction: batched, ``inference_mode``, progress bar, on-disk cache; one place for every protocol.

Feature kinds (what a protocol asks for):

- ``"cls"``: the normalised CLS token ``x_norm_clstoken`` ``[N, D]`` (kNN, logistic regression);
- ``"cls4_avgpool"``: ``[N, 5D]`` = normalised CLS tokens of the last 4 blocks (oldest first) then
  the mean of the last block's normalised patch tokens — the official linear-probe input; its
  last ``2D`` columns are the ``n=1`` input ``[cls_L, avgpool_L]``.

Cache (:func:`load_or_extract`): the entries, their chunk files, manifest and lock are
:mod:`dinobench.feature_cache`'s; this module computes the missing chunks and drives the entry. Under
torchrun every rank extracts a strided share of the missing chunks, rank 0 assembles, all ranks read
the result (the cache folder must be shared by the ranks).

Sharing between protocols: a ``"cls"`` request with no entry of its own is cut from a cached
``"cls4_avgpool"`` entry of the same key otherwise (columns ``[W - 2D, W - D)``: the last block's
CLS, bit-identical to ``x_norm_clstoken`` by the backbone contract) and stored as a normal ``"cls"``
entry whose manifest names its source, so kNN and logreg after the linear probe do no forward. The
reverse is impossible (``"cls"`` lacks three blocks and the pooled patches): the probe after kNN
extracts once. Extracting ``"cls4_avgpool"`` for every ``"cls"`` request would avoid that pass but
costs 5x the disk (ImageNet train, ViT-7B: 105 GB instead of 21 GB) and needs >= 4 blocks.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dinobench.errors import DataError, DinobenchError
# the cache's public names stay importable from here (FEATURE_CODE_VERSION, backbone_key_payload and
# cache_key are only re-exported)
from dinobench.feature_cache import (DEFAULT_CHUNK_SIZE, FEATURE_CODE_VERSION, FeatureCache,  # noqa: F401
                                     FeatureSet, backbone_key_payload, cache_key, cache_root, chunk_plan)

logger = logging.getLogger("dinobench")

FEATURE_KINDS = ("cls", "cls4_avgpool")
#: kind -> cached kinds it can be cut from without a forward (see :func:`superset_columns`)
SUPERSET_KINDS: dict[str, tuple[str, ...]] = {"cls": ("cls4_avgpool",)}


def _unwrap_worker_error(exc: DataError) -> DataError:
    """DataLoader workers re-raise with the whole traceback in the message; keep the last line."""
    message = str(exc)
    if "Original Traceback" in message:
        last = message.strip().splitlines()[-1]
        return DataError(last.split("DataError: ", 1)[-1])
    return exc


def compute_features(model: nn.Module, images: Tensor, kind: str = "cls") -> Tensor:
    """One batch of features of ``kind`` (see the module docstring)."""
    if kind == "cls":
        return model.forward_features(images)["x_norm_clstoken"]
    if kind == "cls4_avgpool":
        layers = model.get_intermediate_layers(images, n=4, return_class_token=True, norm=True)
        patch_last = layers[-1][0]
        return torch.cat([cls for _, cls in layers] + [patch_last.mean(dim=1)], dim=-1)
    raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}")


def superset_columns(kind: str, source_kind: str, width: int, embed_dim: int) -> slice:
    """Columns of a ``source_kind`` feature ``[N, width]`` that equal feature ``kind``.

    ``cls4_avgpool`` is ``[cls_{L-3}, cls_{L-2}, cls_{L-1}, cls_L, avgpool_L]``; the last two are
    ``embed_dim`` (the last block's width) wide for ViTs and ConvNeXts alike, so ``cls_L`` is
    ``[width - 2 * embed_dim, width - embed_dim)``.
    """
    if (kind, source_kind) != ("cls", "cls4_avgpool"):
        raise ValueError(f"feature kind {kind!r} cannot be cut from {source_kind!r}")
    if not 0 < 2 * embed_dim <= width:
        raise ValueError(f"a {source_kind} feature of width {width} holds no {embed_dim}-wide last-block CLS")
    return slice(width - 2 * embed_dim, width - embed_dim)


def _check_kind(kind: str) -> None:
    if kind not in FEATURE_KINDS:
        raise ValueError(f"unknown feature kind {kind!r}; expected one of {FEATURE_KINDS}")


@torch.inference_mode()
def _extract_chunks(model: nn.Module, dataset: Dataset, chunks: list[tuple[int, int]], *, batch_size: int,
                    num_workers: int, device: torch.device | str, desc: str,
                    kind: str) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(position in chunks, features, labels)`` per chunk, in order; batches never span chunks."""
    batches, owner = [], []
    for position, (start, end) in enumerate(chunks):
        for first in range(start, end, batch_size):
            batches.append(list(range(first, min(first + batch_size, end))))
            owner.append(position)
    if not batches:
        return
    device = torch.device(device)
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast(
        "cpu", enabled=False)
    model.eval().to(device)
    feats: list[Tensor] = []
    labels: list[Tensor] = []
    try:
        for index, (images, targets) in enumerate(tqdm(loader, desc=desc, unit="batch", leave=False)):
            with autocast:
                out = compute_features(model, images.to(device, non_blocking=True), kind)
            feats.append(out.float().cpu())
            labels.append(torch.as_tensor(targets, dtype=torch.long))
            if index == len(batches) - 1 or owner[index + 1] != owner[index]:
                yield owner[index], torch.cat(feats), torch.cat(labels)
                feats, labels = [], []
    except DataError as exc:
        raise _unwrap_worker_error(exc) from None


def extract_features(model: nn.Module, dataset: Dataset, *, batch_size: int = 64, num_workers: int = 0,
                     device: torch.device | str = "cpu", desc: str = "features", kind: str = "cls") -> FeatureSet:
    """Features of ``kind`` (default: normalised CLS token) of every sample of ``dataset``, in memory, no cache."""
    _check_kind(kind)
    if len(dataset) == 0:
        raise DataError(f"{desc}: the split is empty; nothing to extract")
    parts = list(_extract_chunks(model, dataset, [(0, len(dataset))], batch_size=batch_size,
                                 num_workers=num_workers, device=device, desc=desc, kind=kind))
    return FeatureSet(parts[0][1], parts[0][2])


# --- torch.distributed helpers (no-ops in a single process) --------------------------------------------------


def _rank_world() -> tuple[int, int]:
    from dinobench.training import distributed as ddp

    return ddp.rank(), ddp.world_size()


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if _rank_world()[1] == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _raise_if_any_failed(error: BaseException | None) -> None:
    """Collective: re-raise this rank's error, or fail every rank when another rank failed."""
    if _rank_world()[1] > 1:
        import torch.distributed as dist

        flag = torch.tensor([0 if error is None else 1])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if error is None and flag.item():
            raise DinobenchError("feature extraction failed on another rank (see its error above)")
    if error is not None:
        raise error


# --- the entry point ------------------------------------------------------------------------------------------


def load_or_extract(model: nn.Module, dataset: Dataset, *, payload: dict[str, Any] | None,
                    cache_dir: str | Path | None = None, batch_size: int = 64, num_workers: int = 0,
                    device: torch.device | str = "cpu", desc: str = "features", kind: str = "cls",
                    chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[FeatureSet, bool]:
    """Features of ``kind`` of ``dataset`` and whether they came from the cache.

    ``payload`` (JSON-able, see :func:`backbone_key_payload`) identifies the features; None disables
    the disk cache. Under torch.distributed the work is sharded over ranks and every rank gets all rows.
    """
    _check_kind(kind)
    if len(dataset) == 0:
        raise DataError(f"{desc}: the split is empty; nothing to extract")
    plan = chunk_plan(len(dataset), int(chunk_size))
    options = dict(batch_size=batch_size, num_workers=num_workers, device=device, desc=desc, kind=kind)
    rank, world = _rank_world()
    if payload is None:
        if world == 1:
            return extract_features(model, dataset, **options), False
        return _extract_distributed_in_memory(model, dataset, plan, rank, world, options), False
    cache = FeatureCache(cache_dir if cache_dir is not None else cache_root(), {**payload, "kind": kind})
    with cache.lock() if rank == 0 else contextlib.nullcontext():  # rank 0 holds the lock for the job
        hit = cache.load() if rank == 0 else None
        if hit is None and rank == 0:
            hit = _cut_from_superset(cache, model, payload, kind, len(dataset), int(chunk_size), desc)
        if _broadcast(hit is not None):
            return (hit if rank == 0 else cache.load(verify=False)), True
        error: BaseException | None = None
        todo = None
        try:
            todo = cache.pending(plan) if rank == 0 else None
        except Exception as exc:  # noqa: BLE001 - shared with the other ranks below
            error = exc
        _raise_if_any_failed(error)
        todo = _broadcast(todo)
        mine = todo[rank::world]
        try:
            for position, features, labels in _extract_chunks(model, dataset, [plan[i] for i in mine], **options):
                cache.write_chunk(*plan[mine[position]], features, labels)
        except Exception as exc:  # noqa: BLE001
            error = exc
        _raise_if_any_failed(error)
        if rank == 0:
            try:
                cache.assemble(plan)
            except Exception as exc:  # noqa: BLE001
                error = exc
        _raise_if_any_failed(error)  # also the barrier before the other ranks read
        result = cache.load(verify=False)
        if result is None:
            raise DinobenchError(f"{cache.dir}: feature cache vanished right after it was written; "
                                 f"is another process deleting it?")
        return result, False


def _cut_from_superset(cache: FeatureCache, model: nn.Module, payload: dict[str, Any], kind: str, num_rows: int,
                       block_rows: int, desc: str) -> FeatureSet | None:
    """``cache``'s features cut from a finished entry of a superset kind (same key otherwise), stored as
    ``cache``'s entry; None when there is none. Caller holds ``cache``'s lock (order: ``kind`` -> source)."""
    root = cache.dir.parent
    for source_kind in SUPERSET_KINDS.get(kind, ()):
        source = FeatureCache(root, {**payload, "kind": source_kind})
        if not source.manifest.is_file():  # absent, or still being extracted: extract ``kind`` ourselves
            continue
        with source.lock():  # a concurrent repair of the source finishes first
            full = source.load()
        if full is None or len(full.labels) != num_rows:
            continue
        try:
            columns = superset_columns(kind, source_kind, full.features.shape[1], int(getattr(model, "embed_dim", 0)))
        except ValueError as exc:
            logger.warning("dinobench: warning: %s: not cutting %s from %s (%s)", desc, kind, source.dir, exc)
            continue
        cache.derive(source, full, columns, block_rows)
        logger.info("dinobench: %s: cut from the cached %s features %s (columns %d:%d), no forward", desc,
                    source_kind, source.dir, columns.start, columns.stop)
        return cache.load(verify=False)
    return None


def _extract_distributed_in_memory(model: nn.Module, dataset: Dataset, plan: list[tuple[int, int]], rank: int,
                                   world: int, options: dict[str, Any]) -> FeatureSet:
    """No cache, several ranks: each extracts ``plan[rank::world]``; the chunks are all-gathered in order."""
    import torch.distributed as dist

    mine = list(range(len(plan)))[rank::world]
    parts, error = {}, None
    try:
        for position, features, labels in _extract_chunks(model, dataset, [plan[i] for i in mine], **options):
            parts[mine[position]] = (features, labels)
    except Exception as exc:  # noqa: BLE001
        error = exc
    _raise_if_any_failed(error)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, parts)
    merged = {index: part for rank_parts in gathered for index, part in rank_parts.items()}
    return FeatureSet(torch.cat([merged[i][0] for i in range(len(plan))]),
                      torch.cat([merged[i][1] for i in range(len(plan))]))
