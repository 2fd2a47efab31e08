"""On-disk feature cache: key, location and entry format behind :func:`dinobench.features.load_or_extract`.

Kept apart from the extraction engine (:mod:`dinobench.features`, which drives this module; this module
knows no models or data loaders) so what makes an entry valid, and how it is written, resumed, locked and
derived, lives in one place.

Layout: one folder per key, ``<root>/<sha256 of the key payload>/``. The split is cut into fixed row
ranges ("chunks", :func:`chunk_plan`); each finished chunk is written atomically as
``chunks/rows_<start>_<end>.npz`` (its presence is the commit marker), so memory stays flat and an
interrupted extraction resumes at the first missing chunk. When every chunk exists they are streamed
into ``features.npy`` / ``labels.npy`` and ``manifest.json`` (key payload, shape, dtype, sha256 of both
files) is written last; an entry without a valid manifest is never used. An exclusive ``flock`` on
``<entry>/.lock`` serialises processes extracting the same key. An entry can also be derived from
columns of another entry (:meth:`FeatureCache.derive`); its manifest then names its source.
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
from torch import Tensor

from dinobench.errors import ConfigError, DinobenchError

logger = logging.getLogger("dinobench")

#: bump when a change in :mod:`dinobench.features`, in this module or in a backbone's forward changes the
#: features they produce
FEATURE_CODE_VERSION = "1"
#: rows per cache chunk: the unit of streaming, resume and distributed sharding
DEFAULT_CHUNK_SIZE = 4096


@dataclass
class FeatureSet:
    """Features ``[N, D]`` (float32, CPU) and integer labels ``[N]`` of one dataset split."""

    features: Tensor
    labels: Tensor


def chunk_plan(num_rows: int, chunk_size: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` covering ``num_rows`` rows, ``chunk_size`` rows each (last may be shorter)."""
    if chunk_size < 1:
        raise ConfigError(f"features.chunk_size must be a positive integer, got {chunk_size}")
    return [(start, min(start + chunk_size, num_rows)) for start in range(0, num_rows, chunk_size)]


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
        from dinobench.utils.io import write_atomic

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
        from dinobench.utils.io import write_atomic

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
