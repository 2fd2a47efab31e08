"""The training data stream: a pure function of ``(seed, iteration)``.

:class:`ShardedIterationSampler` makes iteration ``t`` global batch ``t`` of a seeded per-epoch
permutation (each rank takes its slice); :class:`SeededSamples` seeds every sample's random transform
by ``(seed, iteration, index)``. So a run sees the same batches whatever the number of ranks and
workers, and a resumed run continues the exact stream without replaying the consumed batches.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dinobench.errors import ConfigError
from dinobench.utils.seeding import seed_from


class ShardedIterationSampler(Sampler):
    """Infinite batch sampler: iteration ``t`` is global batch ``t`` of a seeded per-epoch permutation;
    rank ``r`` takes its ``batch_size`` slice as ``(t, index)`` keys. Starts at ``start_iteration``."""

    def __init__(self, n_samples: int, batch_size: int, world_size: int, rank: int, seed: int,
                 start_iteration: int = 0) -> None:
        self.n, self.batch, self.world, self.rank, self.seed = n_samples, batch_size, world_size, rank, seed
        self.per_epoch = n_samples // (batch_size * world_size)
        if self.per_epoch == 0:
            raise ConfigError(f"the training set of {n_samples} samples is smaller than one global batch "
                              f"({batch_size} per rank x {world_size} ranks); lower the batch size")
        self.start = start_iteration

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration = self.start
        while True:
            epoch, step = divmod(iteration, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed_from(self.seed, epoch)))
            global_start = step * self.batch * self.world
            mine = perm[global_start + self.rank * self.batch: global_start + (self.rank + 1) * self.batch]
            yield [(iteration, int(i)) for i in mine]
            iteration += 1

    def __len__(self) -> int:  # pragma: no cover - infinite; DataLoader only needs it for len()
        raise TypeError("ShardedIterationSampler is infinite")


class SeededSamples(Dataset):
    """Item ``(iteration, index)`` -> ``base[index]`` with torch/python/numpy RNGs seeded by
    ``(seed, iteration, index)`` during the random transform (caller's RNG states untouched)."""

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        iteration, index = key
        sample_seed = seed_from(self.seed, iteration, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed)
                random.seed(sample_seed)
                np.random.seed(sample_seed % 2**32)
                return self.base[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def iteration_loader(dataset: Dataset, batch_per_rank: int, *, world_size: int, rank: int, seed: int,
                     start_iteration: int = 0, num_workers: int = 0, collate_fn: Callable | None = None,
                     pin_memory: bool = False) -> DataLoader:
    """An infinite loader over ``dataset`` (items keyed ``(iteration, index)``) from ``start_iteration``."""
    sampler = ShardedIterationSampler(len(dataset), batch_per_rank, world_size, rank, seed,  # type: ignore[arg-type]
                                      start_iteration=start_iteration)
    # own generator: creating the iterator must not draw from the global RNG (exact resume)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=int(num_workers), collate_fn=collate_fn,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False, pin_memory=pin_memory)
