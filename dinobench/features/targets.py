"""Per-sample targets of a feature entry, and the :class:`FeatureSet` a protocol gets.

A dataset item is ``(image, target)``; after batching, ``target`` is one of three structures:

- ``"label"``: an int per sample (a 1-D integer tensor): stored as ``labels.npy`` (int64), returned
  as :attr:`FeatureSet.labels` (and as :attr:`FeatureSet.targets`);
- ``"array"``: one tensor / array / float of a fixed per-sample shape: ``targets/target.npy``;
- ``"dict"``: a dict of ints / floats / fixed-shape arrays: ``targets/<name>.npy`` per key.

Internally a structure is a :class:`TargetLayout` plus a flat ``name -> array`` mapping.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Union

import numpy as np
import torch
from torch import Tensor

from dinobench.errors import DataError

#: a batch (or split) of targets as a dataset gives them: labels, one tensor, or a dict of tensors
Targets = Union[Tensor, dict[str, Tensor]]

LABELS = "labels"  # flat name of int targets
TARGET = "target"  # flat name of a single array target
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass
class FeatureSet:
    """Features ``[N, *shape]`` (CPU; memory-mapped when read from the cache) and targets of one split.

    ``labels``: int64 ``[N]`` when the dataset's target is an int, else None. ``targets``: the targets
    as the dataset gives them, batched over the split (a tensor ``[N, *shape]`` or a dict of those;
    for int targets the same tensor as ``labels``).
    """

    features: Tensor
    labels: Tensor | None = None
    targets: Targets | None = None

    def __post_init__(self) -> None:
        if self.targets is None:
            self.targets = self.labels
        elif self.labels is None and isinstance(self.targets, Tensor) and is_label_tensor(self.targets):
            self.labels = self.targets


def is_label_tensor(value: Tensor) -> bool:
    """Whether a batched target is one int per sample (stored as ``labels.npy``)."""
    return value.ndim == 1 and not value.dtype.is_floating_point and not value.dtype.is_complex \
        and value.dtype != torch.bool


@dataclass(frozen=True)
class TargetLayout:
    """The structure of a split's targets and its flat array names (see the module docstring)."""

    structure: str  # "label" | "array" | "dict"
    names: tuple[str, ...]

    def file(self, name: str) -> str:
        """Path of array ``name`` relative to the entry folder."""
        return "labels.npy" if self.structure == "label" else f"targets/{name}.npy"

    def unflatten(self, arrays: Mapping[str, Tensor]) -> Targets:
        """The dataset's structure back from the flat arrays."""
        if self.structure == "dict":
            return {name: arrays[name] for name in self.names}
        return arrays[self.names[0]]


def flatten_targets(targets: Any, where: str) -> tuple[TargetLayout, dict[str, Tensor]]:
    """``(layout, name -> tensor [B, *shape])`` of batched ``targets``; a one-line DataError otherwise."""
    if isinstance(targets, Tensor):
        if is_label_tensor(targets):
            return TargetLayout("label", (LABELS,)), {LABELS: targets.to(torch.int64)}
        return TargetLayout("array", (TARGET,)), {TARGET: _check_rows(targets, TARGET, where)}
    if isinstance(targets, Mapping) and targets:
        flat = {}
        for name in sorted(targets):
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise DataError(f"{where}: target key {name!r} cannot name a cache file; use letters, digits, "
                                f"'_', '.' or '-'")
            value = targets[name]
            if not isinstance(value, Tensor):
                raise DataError(f"{where}: target {name!r} batches to {type(value).__name__}; cached targets "
                                f"must be ints, floats or arrays of one fixed shape")
            flat[name] = _check_rows(value, name, where)
        return TargetLayout("dict", tuple(flat)), flat
    raise DataError(f"{where}: targets batch to {type(targets).__name__}; a dataset item must be (image, target) "
                    f"with target an int, a fixed-shape array/tensor or a non-empty dict of those")


def _check_rows(value: Tensor, name: str, where: str) -> Tensor:
    if value.ndim == 0:
        raise DataError(f"{where}: target {name!r} has no batch dimension")
    return value


def concat_targets(parts: list[Any], where: str) -> Targets:
    """Batched targets of consecutive batches joined along the rows (one structure, one shape each)."""
    layout, first = flatten_targets(parts[0], where)
    pieces: dict[str, list[Tensor]] = {name: [value] for name, value in first.items()}
    for part in parts[1:]:
        other, flat = flatten_targets(part, where)
        if other != layout:
            raise DataError(f"{where}: targets change structure between batches ({layout.names} vs "
                            f"{other.names}); every item needs the same target structure")
        for name, value in flat.items():
            reference = pieces[name][0]
            if value.shape[1:] != reference.shape[1:] or value.dtype != reference.dtype:
                raise DataError(f"{where}: target {name!r} is {value.dtype}{list(value.shape[1:])} in one batch "
                                f"and {reference.dtype}{list(reference.shape[1:])} in another; cached targets "
                                f"need one fixed shape and dtype")
            pieces[name].append(value)
    return layout.unflatten({name: torch.cat(values) for name, values in pieces.items()})


def numpy_arrays(flat: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
    """The flat target tensors as numpy arrays (no copy for CPU tensors)."""
    return {name: value.numpy() for name, value in flat.items()}
