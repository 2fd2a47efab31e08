"""Sharded evaluation: each rank evaluates its share of a dataset, the metric states are merged, and
every rank computes the same metrics a single process would.

A mergeable metric has ``state() -> dict`` (picklable: tensors, numbers) and ``merge(states)``
(replace its state by the combination of ``states``, one per rank in rank order) besides its own
``update(...)`` and ``compute() -> dict``; :mod:`dinobench.metrics.dense` has two.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from dinobench.errors import PluginError
from dinobench.utils import distributed as ddp


@runtime_checkable
class MergeableMetric(Protocol):
    """What :func:`evaluate_sharded` needs of a metric (``update`` is called by the caller's ``update``)."""

    def state(self) -> dict[str, Any]:
        """This process's accumulated state."""

    def merge(self, states: list[dict[str, Any]]) -> None:
        """Replace the state by the combination of ``states`` (every rank's, in rank order)."""

    def compute(self) -> dict[str, float]:
        """The metrics of the accumulated state."""


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """This rank's share of ``range(n)``: ``rank, rank + world, ...`` (deterministic, balanced to one)."""
    return list(range(rank, n, world))


def sync_metric(metric: MergeableMetric) -> None:
    """Merge ``metric``'s state over all ranks (collective; a no-op in one process)."""
    if ddp.world_size() == 1:
        return
    if not isinstance(metric, MergeableMetric):
        raise PluginError(f"{type(metric).__name__} has no state()/merge(): it cannot be evaluated on "
                          f"{ddp.world_size()} ranks; implement them (see dinobench.metrics.sharded)")
    metric.merge(ddp.all_gather_objects(metric.state()))


def evaluate_sharded(dataset: Dataset, update: Callable[[Any], None], metric: MergeableMetric, *,
                     num_workers: int = 0, batch_size: int = 1, collate_fn: Callable | None = None,
                     desc: str = "evaluate") -> dict[str, float]:
    """``metric.compute()`` after ``update(batch)`` over this rank's share of ``dataset``, merged over ranks.

    Batches come from a ``DataLoader`` (``batch_size`` 1 by default, in index order, no shuffling) over
    indices ``rank::world``; ``update`` runs under ``torch.no_grad()``. Call it on every rank.
    """
    world, rank = ddp.world_size(), ddp.rank()
    indices = shard_indices(len(dataset), rank, world)  # type: ignore[arg-type]
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=int(num_workers),
                        collate_fn=collate_fn, generator=torch.Generator().manual_seed(0))
    quiet = rank != 0 or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    with torch.no_grad():
        for batch in tqdm(loader, desc=desc, unit="batch" if batch_size > 1 else "img", leave=False, disable=quiet):
            update(batch)
    sync_metric(metric)
    return metric.compute()
