"""Feature extraction: batched, ``inference_mode``, progress bar, on-disk cache; one place for every protocol.

Feature kinds (what a protocol asks for):

- ``"cls"``: the normalised CLS token ``x_norm_clstoken`` ``[N, D]`` (kNN, logistic regression);
- ``"cls4_avgpool"``: ``[N, 5D]`` = normalised CLS tokens of the last 4 blocks (oldest first) then
  the mean of the last block's normalised patch tokens — the official linear-probe input; its
  last ``2D`` columns are the ``n=1`` input ``[cls_L, avgpool_L]``.

Cache (:func:`load_or_extract`): one folder per key, ``<root>/<sha256 of the key payload>/``. The
split is cut into fixed row ranges ("chunks"); each finished chunk is written atomically as
``chunks/rows_<start>_<end>.npz`` (its presence is the commit marker), so memory stays flat and an
interrupted extraction resumes at the first missing chunk. When every chunk exists they are
streamed into ``features.npy`` / ``labels.npy`` and ``manifest.json`` (key payload, shape, dtype,
sha256 of both files) is written last; an entry without a valid manifest is never used. An
exclusive ``flock`` on ``<entry>/.lock`` serialises processes extracting the same key. Under
torchrun every rank extracts a strided share of the missing chunks, rank 0 assembles, all ranks
read the result (the cache folder must be shared by the ranks).

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
import fcntl
import hashlib
import json
import logging
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dinobench.errors import ConfigError, DataError, DinobenchError

logger = logging.getLogger("dinobench")

FEATURE_KINDS = ("cls", "cls4_avgpool")
#: bump when a change in this module or in a backbone's forward changes the features it produces
FEATURE_CODE_VERSION = "1"
#: rows per cache chunk: the unit of streaming, resume and distributed sharding
DEFAULT_CHUNK_SIZE = 4096
#: kind -> cached kinds it can be cut from without a forward (see :func:`superset_columns`)
SUPERSET_KINDS: dict[str, tuple[str, ...]] = {"cls": ("cls4_avgpool",)}


@dataclass
class FeatureSet:
    """Features ``[N, D]`` (float32, CPU) and integer labels ``[N]`` of one dataset split."""

    features: Tensor
    labels: Tensor


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


def chunk_plan(num_rows: int, chunk_size: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` covering ``num_rows`` rows, ``chunk_size`` rows each (last may be shorter)."""
    if chunk_size < 1:
        raise ConfigError(f"features.chunk_size must be a positive integer, got {chunk_size}")
    return [(start, min(start + chunk_size, num_rows)) for start in range(0, num_rows, chunk_size)]


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


# --- cache key and location -------------------------------------------------------------------------------


def cache_root(features_cfg: dict[str, Any] | None = None) -> Path:
    """Cache folder: ``features.cache_dir``, else ``$DINOBENCH_CACHE``, else
    ``${XDG_CACHE_HOME:-~/.cache}/dinobench/features``."""
    configured = (features_cfg or {}).get("cache_dir") or os.environ.get("DINOBENCH_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dinobench" / "features"


def backbone_key_payload(backbone: str, weights_sha256: str | None, seed: int, overrides: dict[str, Any],
                         transform: dict[str, Any], mean: Any, std: Any, precision: str,
                         identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run-wide part of a feature-cache key: what produced the model and what the images go through.

    ``identity``: the registered backbone's factory, default arguments and providing plugin/package.
    """
    import dinobench

    if weights_sha256:
        weights: dict[str, Any] = {"sha256": weights_sha256}
    else:  # random init: the seed and the init code (torch version) make the weights
        weights = {"random_init_seed": int(seed), "torch": torch.__version__}
    return {"feature_code_version": FEATURE_CODE_VERSION, "dinobench_version": dinobench.__version__,
            "backbone": {"name": backbone, "overrides": dict(overrides), "weights": weights,
                         "identity": dict(identity or {})},
            "transform": {**dict(transform), "mean": [float(m) for m in mean], "std": [float(s) for s in std]},
            "precision": precision}


def cache_key(payload: dict[str, Any]) -> str:
    """Hex sha256 of the canonical JSON of ``payload``."""
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _canonical(payload: Any) -> Any:
    return json.loads(json.dumps(payload, sort_keys=True, default=str))


def _sha256_file(path: Path) -> str:
    from dinobench.backbones.loading import sha256_file

    return sha256_file(path)


# --- one cache entry ---------------------------------------------------------------------------------------


class FeatureCache:
    """The entry ``<root>/<key>/`` of one (backbone, transform, dataset split, kind) key."""

    def __init__(self, root: str | Path, payload: dict[str, Any]) -> None:
        self.payload = _canonical(payload)
        self.key = cache_key(self.payload)
        self.dir = Path(root).expanduser() / self.key
        self.chunks_dir = self.dir / "chunks"
        self.manifest = self.dir / "manifest.json"
        self.features_file, self.labels_file = self.dir / "features.npy", self.dir / "labels.npy"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive ``flock`` on the entry: one process extracts, the others wait and then read."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.dir / ".lock", "a+")
        except OSError as exc:
            raise DinobenchError(f"{self.dir}: feature cache not writable ({exc}); set features.cache_dir / "
                                 f"$DINOBENCH_CACHE to a writable folder or features.cache=false") from exc
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("dinobench: waiting for another process extracting into %s", self.dir)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self, verify: bool = True) -> FeatureSet | None:
        """The finished features, or None when absent, partial or corrupt (never a silently bad result)."""
        if not self.manifest.is_file():
            return None
        try:
            manifest = json.loads(self.manifest.read_text())
            if manifest.get("key") != self.key or manifest.get("payload") != self.payload:
                raise ValueError("manifest belongs to a different key")
            features = np.load(self.features_file, mmap_mode="c")
            labels = np.load(self.labels_file)
            if list(features.shape) != manifest["shape"] or str(features.dtype) != manifest["dtype"]:
                raise ValueError(f"features.npy is {features.dtype}{list(features.shape)}, manifest says "
                                 f"{manifest['dtype']}{manifest['shape']}")
            if labels.shape != (features.shape[0],) or labels.dtype != np.int64:
                raise ValueError(f"labels.npy is {labels.dtype}{list(labels.shape)}")
            if verify and (_sha256_file(self.features_file) != manifest["features_sha256"]
                           or _sha256_file(self.labels_file) != manifest["labels_sha256"]):
                raise ValueError("sha256 mismatch")
        except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
            logger.warning("dinobench: warning: feature cache %s is corrupt (%s); recomputing", self.dir, exc)
            return None
        return FeatureSet(torch.from_numpy(features), torch.from_numpy(labels))

    def _chunk_file(self, start: int, end: int) -> Path:
        return self.chunks_dir / f"rows_{start:012d}_{end:012d}.npz"

    def _read_chunk(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        with np.load(self._chunk_file(start, end)) as data:
            features, labels = data["features"], data["labels"]
        if features.ndim != 2 or features.shape[0] != end - start or labels.shape != (end - start,):
            raise ValueError(f"chunk has shape {list(features.shape)}, expected {end - start} rows")
        return features, labels

    def pending(self, plan: list[tuple[int, int]]) -> list[int]:
        """Indices into ``plan`` still to compute; drops finished files, stale and unreadable chunks."""
        for path in (self.manifest, self.features_file, self.labels_file):
            path.unlink(missing_ok=True)  # only called when load() failed: never reuse them
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        expected = {self._chunk_file(s, e).name for s, e in plan}
        for path in self.chunks_dir.iterdir():
            if path.name not in expected:  # other chunk size, or a temp file of a killed writer
                path.unlink(missing_ok=True)
        todo, width = [], None
        for index, (start, end) in enumerate(plan):
            if not self._chunk_file(start, end).is_file():
                todo.append(index)
                continue
            try:
                features, _ = self._read_chunk(start, end)
                if width not in (None, features.shape[1]):
                    raise ValueError("feature width differs from the other chunks")
                width = features.shape[1]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                logger.warning("dinobench: warning: %s unreadable (%s); recomputing it",
                               self._chunk_file(start, end), exc)
                self._chunk_file(start, end).unlink(missing_ok=True)
                todo.append(index)
        if len(todo) < len(plan):
            logger.info("dinobench: resuming feature extraction: %d of %d chunks already done",
                        len(plan) - len(todo), len(plan))
        return todo

    def write_chunk(self, start: int, end: int, features: Tensor, labels: Tensor) -> None:
        """Commit one chunk (atomic rename: a chunk file is either complete or absent)."""
        from dinobench.results import write_atomic

        write_atomic(self._chunk_file(start, end),
                     lambda fh: np.savez(fh, features=features.numpy(), labels=labels.numpy()))

    def assemble(self, plan: list[tuple[int, int]]) -> None:
        """Stream the chunks into ``features.npy`` / ``labels.npy``, write the manifest last, drop the chunks."""
        width = self._read_chunk(*plan[0])[0].shape[1]
        self._commit(plan[-1][1], width, ((start, end, *self._read_chunk(start, end)) for start, end in plan),
                     chunks=len(plan))

    def derive(self, source: "FeatureCache", full: FeatureSet, columns: slice, block_rows: int) -> None:
        """Store ``columns`` of ``source``'s features ``full`` as this entry, ``block_rows`` rows at a time
        (memory stays flat); the manifest records the source key."""
        self.manifest.unlink(missing_ok=True)  # a stale manifest must never vouch for the new files
        features, labels = full.features.numpy(), full.labels.numpy()
        blocks = ((start, end, features[start:end, columns], labels[start:end])
                  for start, end in chunk_plan(len(labels), block_rows))
        self._commit(len(labels), columns.stop - columns.start, blocks,
                     derived_from={"kind": source.payload["kind"], "key": source.key,
                                   "columns": [columns.start, columns.stop]})

    def _commit(self, num_rows: int, width: int, blocks: Iterator[tuple[int, int, np.ndarray, np.ndarray]],
                **extra: Any) -> None:
        """Write row blocks ``(start, end, features, labels)`` to ``features.npy`` / ``labels.npy`` (atomic),
        then the manifest (plus ``extra``) last, then drop any chunks."""
        from dinobench.results import write_atomic

        tmp = self.dir / f".features.npy.{os.getpid()}.tmp"
        labels = np.empty(num_rows, dtype=np.int64)
        try:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(num_rows, width))
            for start, end, features, block_labels in blocks:
                out[start:end] = features
                labels[start:end] = block_labels
            out.flush()
            del out
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, self.features_file)
        finally:
            tmp.unlink(missing_ok=True)
        write_atomic(self.labels_file, lambda fh: np.save(fh, labels))
        manifest = {"key": self.key, "payload": self.payload, "shape": [num_rows, int(width)], "dtype": "float32",
                    "labels_dtype": "int64", **extra, "features_sha256": _sha256_file(self.features_file),
                    "labels_sha256": _sha256_file(self.labels_file)}
        write_atomic(self.manifest, json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(self.chunks_dir, ignore_errors=True)


# --- torch.distributed helpers (no-ops in a single process) --------------------------------------------------


def _rank_world() -> tuple[int, int]:
    from dinobench.ssl import distributed as ddp

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
