"""SSL data pipeline: per-sample seeded multi-crop views, a resumable sharded sampler, seeded collation.

Every random draw of the data side depends only on ``(seed, iteration, index)``, so a run gives
the same batches whatever the number of workers, and a resumed run continues the exact stream.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import Dataset, Sampler

from dinobench.ssl.collate import collate_data_and_cast
from dinobench.ssl.masking import MaskingGenerator


def _mix(*values: int) -> int:
    """A stable 63-bit seed from integers (Python's hash of ints is stable across processes)."""
    out = 0x9E3779B97F4A7C15
    for v in values:
        out = (out * 6364136223846793005 + (v & 0xFFFFFFFFFFFFFFFF) + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
    return out


class MultiCropDataset(Dataset):
    """Wraps a classification dataset; item ``(iteration, index)`` -> ``(crops dict, label, iteration)``."""

    def __init__(self, base: Any, augmentation: Callable, seed: int) -> None:
        self.base, self.augmentation, self.seed = base, augmentation, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        iteration, index = key
        source, label = self.base.samples[index]
        image = self.base.load(source)
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
            torch.manual_seed(_mix(self.seed, iteration, index))
            crops = self.augmentation(image)
        return crops, label, iteration


class ShardedIterationSampler(Sampler):
    """Infinite batch sampler: iteration ``t`` is global batch ``t`` of a seeded per-epoch permutation;
    rank ``r`` takes its ``batch_size`` slice. Starts at ``start_iteration`` without replaying."""

    def __init__(self, n_samples: int, batch_size: int, world_size: int, rank: int, seed: int,
                 start_iteration: int = 0) -> None:
        self.n, self.batch, self.world, self.rank, self.seed = n_samples, batch_size, world_size, rank, seed
        self.per_epoch = n_samples // (batch_size * world_size)
        if self.per_epoch == 0:
            raise ValueError(f"dataset of {n_samples} samples is smaller than one global batch "
                             f"({batch_size} x {world_size} ranks); lower train.batch_size_per_gpu")
        self.start = start_iteration

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration = self.start
        while True:
            epoch, step = divmod(iteration, self.per_epoch)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(_mix(self.seed, epoch)))
            global_start = step * self.batch * self.world
            mine = perm[global_start + self.rank * self.batch: global_start + (self.rank + 1) * self.batch]
            yield [(iteration, int(i)) for i in mine]
            iteration += 1

    def __len__(self) -> int:  # pragma: no cover - infinite; DataLoader only needs it for len()
        raise TypeError("ShardedIterationSampler is infinite")


class IterationCollate:
    """Picklable training collate: :func:`~dinobench.ssl.collate.collate_data_and_cast` with its
    mask RNG seeded by ``(seed, iteration)`` and masks drawn for the *global* batch.

    Every rank seeds the same RNG and keeps its own rows, so the masks do not depend on the
    number of ranks or workers (an N-rank run sees exactly the batch a single process would) and
    a resumed run draws the same masks. Adds ``iteration`` (the samples' iteration) to the batch.
    """

    def __init__(self, crops_cfg: dict[str, Any], ibot_cfg: dict[str, Any], patch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        grid = crops_cfg["global_crops_size"] // patch_size
        self.n_tokens = grid * grid
        # the official generator: blocks of at most half the grid
        self.mask_generator = MaskingGenerator((grid, grid), max_num_patches=int(0.5 * self.n_tokens))
        self.ratio = tuple(ibot_cfg["mask_ratio_min_max"])
        self.probability = ibot_cfg["mask_sample_probability"]
        self.seed, self.rank, self.world = seed, rank, world_size

    def __call__(self, samples: list[tuple[dict, int, int]]) -> dict[str, Any]:
        iteration = samples[0][2]
        rng = random.Random(_mix(self.seed, iteration, 7))
        out = collate_data_and_cast(samples, self.ratio, self.probability, torch.float32, n_tokens=self.n_tokens,
                                    mask_generator=self.mask_generator, rng=rng, world_size=self.world, rank=self.rank)
        out["iteration"] = iteration
        return out
