"""One on-disk feature-cache entry: chunk files, assembly, manifest with checksums, lock, derivation.

Layout: one folder per key, ``<root>/<sha256 of the key payload>/``. The split is cut into fixed row
ranges ("chunks", :func:`~dinobench.features.keys.chunk_plan`); each finished chunk is written atomically
as ``chunks/rows_<start>_<end>.npz`` (its presence is the commit marker), so memory stays flat and an
interrupted extraction resumes at the first missing chunk. When every chunk exists they are streamed
into ``features.npy`` ``[N, *shape]`` and the targets (``labels.npy`` for int targets, else
``targets/<name>.npy``, see :mod:`dinobench.features.targets`), and ``manifest.json`` (key payload,
shape and dtype of every array, their sha256) is written last; an entry without a valid manifest is
never used. Arrays are read back memory-mapped (copy-on-write: nothing is read into RAM up front, and
an in-place op of a protocol changes its private pages, never the file). An exclusive ``flock`` on
``<entry>/.lock`` serialises processes extracting the same key. An entry can also be derived from
another entry without a forward (:meth:`FeatureCache.derive`); its manifest then names its source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from dinobench.errors import DinobenchError
from dinobench.features.keys import cache_key, canonical, chunk_plan
from dinobench.features.kinds import FeatureCut
from dinobench.features.targets import LABELS, FeatureSet, TargetLayout, Targets, flatten_targets, numpy_arrays
from dinobench.utils.io import exclusive_lock, write_atomic

logger = logging.getLogger("dinobench")

#: a block of rows being committed: (start, end, features, flat targets)
Block = tuple[int, int, np.ndarray, dict[str, np.ndarray]]
_LAYOUT = "__target_layout__"  # chunk member holding the target layout (absent: int labels)
_BAD = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _signature(features: np.ndarray, targets: dict[str, np.ndarray]) -> tuple:
    """What every chunk of an entry must share: per-sample shapes and dtypes."""
    return (features.shape[1:], str(features.dtype),
            tuple((name, value.shape[1:], str(value.dtype)) for name, value in targets.items()))


class FeatureCache:
    """The entry ``<root>/<key>/`` of one (backbone, transform, dataset split, kind, dtype) key."""

    def __init__(self, root: str | Path, payload: dict[str, Any]) -> None:
        self.payload = canonical(payload)
        self.key = cache_key(self.payload)
        self.dir = Path(root).expanduser() / self.key
        self.chunks_dir = self.dir / "chunks"
        self.targets_dir = self.dir / "targets"
        self.manifest = self.dir / "manifest.json"
        self.features_file, self.labels_file = self.dir / "features.npy", self.dir / "labels.npy"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive ``flock`` on the entry: one process extracts, the others wait and then read."""
        with exclusive_lock(self.dir, "extracting into", "feature cache", "set features.cache_dir / "
                            "$DINOBENCH_CACHE to a writable folder or features.cache=false"):
            yield

    # --- reading -------------------------------------------------------------------------------------------

    def load(self, verify: bool = True) -> FeatureSet | None:
        """The finished entry, memory-mapped, or None when absent, partial or corrupt (never a silently
        bad result); ``verify`` checks every file's sha256."""
        if not self.manifest.is_file():
            return None
        try:
            manifest = json.loads(self.manifest.read_text())
            if manifest.get("key") != self.key or manifest.get("payload") != self.payload:
                raise ValueError("manifest belongs to a different key")
            features = self._open(self.features_file, manifest["shape"], manifest["dtype"],
                                  manifest["features_sha256"], verify)
            layout, described = self._described_targets(manifest)
            flat = {name: torch.from_numpy(self._open(self.dir / layout.file(name), [features.shape[0], *spec["shape"]],
                                                      spec["dtype"], spec["sha256"], verify))
                    for name, spec in described.items()}
        except _BAD as exc:
            logger.warning("dinobench: warning: feature cache %s is corrupt (%s); recomputing", self.dir, exc)
            return None
        return FeatureSet(torch.from_numpy(features), targets=layout.unflatten(flat))

    @staticmethod
    def _open(path: Path, shape: list[int], dtype: str, sha256: str, verify: bool) -> np.ndarray:
        array = np.load(path, mmap_mode="c")
        if list(array.shape) != list(shape) or str(array.dtype) != dtype:
            raise ValueError(f"{path.name} is {array.dtype}{list(array.shape)}, manifest says {dtype}{list(shape)}")
        if verify and sha256_file(path) != sha256:
            raise ValueError(f"{path.name}: sha256 mismatch")
        return array

    @staticmethod
    def _described_targets(manifest: dict[str, Any]) -> tuple[TargetLayout, dict[str, dict[str, Any]]]:
        """Layout and per-array ``{shape, dtype, sha256}`` (per sample); entries written before targets
        were general hold int labels only."""
        if "targets" not in manifest:
            return TargetLayout("label", (LABELS,)), {LABELS: {"shape": [], "dtype": manifest["labels_dtype"],
                                                               "sha256": manifest["labels_sha256"]}}
        described = manifest["targets"]
        layout = TargetLayout(described["structure"], tuple(described["arrays"]))
        if layout.structure not in ("label", "array", "dict"):
            raise ValueError(f"unknown target structure {layout.structure!r}")
        return layout, described["arrays"]

    # --- writing chunks ------------------------------------------------------------------------------------

    def _chunk_file(self, start: int, end: int) -> Path:
        return self.chunks_dir / f"rows_{start:012d}_{end:012d}.npz"

    def _read_chunk(self, start: int, end: int) -> tuple[np.ndarray, TargetLayout, dict[str, np.ndarray]]:
        with np.load(self._chunk_file(start, end)) as data:
            if _LAYOUT in data.files:
                described = json.loads(str(data[_LAYOUT]))
                layout = TargetLayout(described["structure"], tuple(described["names"]))
            else:  # written before targets were general
                layout = TargetLayout("label", (LABELS,))
            features = data["features"]
            flat = {name: data[f"target.{name}"] if _LAYOUT in data.files else data[name] for name in layout.names}
        rows = end - start
        if features.ndim < 1 or features.shape[0] != rows or any(v.shape[:1] != (rows,) for v in flat.values()):
            raise ValueError(f"chunk has shape {list(features.shape)}, expected {rows} rows")
        return features, layout, flat

    def pending(self, plan: list[tuple[int, int]]) -> list[int]:
        """Indices into ``plan`` still to compute; drops finished files, stale and unreadable chunks."""
        for path in (self.manifest, self.features_file, self.labels_file):
            path.unlink(missing_ok=True)  # only called when load() failed: never reuse them
        shutil.rmtree(self.targets_dir, ignore_errors=True)
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        expected = {self._chunk_file(s, e).name for s, e in plan}
        for path in self.chunks_dir.iterdir():
            if path.name not in expected:  # other chunk size, or a temp file of a killed writer
                path.unlink(missing_ok=True)
        todo, signature = [], None
        for index, (start, end) in enumerate(plan):
            if not self._chunk_file(start, end).is_file():
                todo.append(index)
                continue
            try:
                features, layout, flat = self._read_chunk(start, end)
                if signature not in (None, (layout, _signature(features, flat))):
                    raise ValueError("feature or target shape differs from the other chunks")
                signature = (layout, _signature(features, flat))
            except _BAD as exc:
                logger.warning("dinobench: warning: %s unreadable (%s); recomputing it",
                               self._chunk_file(start, end), exc)
                self._chunk_file(start, end).unlink(missing_ok=True)
                todo.append(index)
        if len(todo) < len(plan):
            logger.info("dinobench: resuming feature extraction: %d of %d chunks already done",
                        len(plan) - len(todo), len(plan))
        return todo

    def write_chunk(self, start: int, end: int, features: Tensor, targets: Targets) -> None:
        """Commit one chunk of rows ``[start, end)`` (atomic rename: a chunk file is complete or absent)."""
        layout, flat = flatten_targets(targets, str(self.dir))
        members = {"features": features.numpy(), _LAYOUT: np.array(json.dumps(
            {"structure": layout.structure, "names": list(layout.names)})),
            **{f"target.{name}": value for name, value in numpy_arrays(flat).items()}}
        write_atomic(self._chunk_file(start, end), lambda fh: np.savez(fh, **members))

    def assemble(self, plan: list[tuple[int, int]]) -> None:
        """Stream the chunks into the entry's arrays, write the manifest last, drop the chunks."""
        features, layout, flat = self._read_chunk(*plan[0])
        self._commit(plan[-1][1], layout, _signature(features, flat),
                     ((start, end, *self._read_chunk(start, end)[::2]) for start, end in plan), chunks=len(plan))

    def derive(self, source: "FeatureCache", full: FeatureSet, cut: FeatureCut, block_rows: int) -> None:
        """Store ``cut`` of ``source``'s entry ``full`` (same targets) as this entry, ``block_rows`` rows at a
        time (memory stays flat); the manifest records the source key and ``cut.info``."""
        self.manifest.unlink(missing_ok=True)  # a stale manifest must never vouch for the new files
        features = full.features.numpy()
        layout, flat = flatten_targets(full.targets, str(source.dir))
        arrays = numpy_arrays(flat)
        first = np.asarray(cut.apply(features[:1]))
        if first.shape[1:] != tuple(cut.shape):
            raise DinobenchError(f"feature cut {cut.info} of {source.payload['kind']} gives shape "
                                 f"{list(first.shape[1:])}, it declares {list(cut.shape)}")
        blocks = ((start, end, cut.apply(features[start:end]), {n: a[start:end] for n, a in arrays.items()})
                  for start, end in chunk_plan(len(features), block_rows))
        signature = ((*cut.shape,), str(features.dtype),
                     tuple((n, a.shape[1:], str(a.dtype)) for n, a in arrays.items()))
        self._commit(len(features), layout, signature, blocks,
                     derived_from={"kind": source.payload["kind"], "key": source.key, **cut.info})

    def _commit(self, num_rows: int, layout: TargetLayout, signature: tuple, blocks: Iterator[Block],
                **extra: Any) -> None:
        """Write row blocks into ``features.npy`` and the target files (each atomic), then the manifest
        (plus ``extra``) last, then drop any chunks."""
        feature_shape, dtype, target_specs = signature
        files = {"features": (self.features_file, feature_shape, dtype)}
        files.update({name: (self.dir / layout.file(name), shape, dt) for name, shape, dt in target_specs})
        temps = {name: path.parent / f".{path.name}.{os.getpid()}.tmp" for name, (path, _, _) in files.items()}
        try:
            outs = {}
            for name, (path, shape, dt) in files.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                outs[name] = np.lib.format.open_memmap(temps[name], mode="w+", dtype=np.dtype(dt),
                                                       shape=(num_rows, *shape))
            for start, end, features, flat in blocks:
                outs["features"][start:end] = features
                for name, value in flat.items():
                    outs[name][start:end] = value
            for out in outs.values():
                out.flush()
            del outs, out
            for name, (path, _, _) in files.items():
                with open(temps[name], "rb+") as fh:
                    os.fsync(fh.fileno())
                os.replace(temps[name], path)
        finally:
            for temp in temps.values():
                temp.unlink(missing_ok=True)
        sums = {name: sha256_file(path) for name, (path, _, _) in files.items()}
        manifest: dict[str, Any] = {"key": self.key, "payload": self.payload, "shape": [num_rows, *feature_shape],
                                    "dtype": dtype, **extra, "features_sha256": sums["features"]}
        if layout.structure == "label":  # the fields entries had before targets were general
            manifest.update(labels_dtype="int64", labels_sha256=sums[LABELS])
        manifest["targets"] = {"structure": layout.structure, "arrays": {
            name: {"file": layout.file(name), "shape": list(shape), "dtype": dt, "sha256": sums[name]}
            for name, shape, dt in target_specs}}
        write_atomic(self.manifest, json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(self.chunks_dir, ignore_errors=True)
