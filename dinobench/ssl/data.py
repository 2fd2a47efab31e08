"""SSL data pipeline: per-sample seeded multi-crop views and seeded collation (the sampler is the
engine's :class:`dinobench.training.sampler.ShardedIterationSampler`).

Every random draw of the data side depends only on ``(seed, iteration, index)``, so a run gives
the same batches whatever the number of workers, and a resumed run continues the exact stream.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from dinobench.ssl.collate import collate_data_and_cast
from dinobench.ssl.masking import MaskingGenerator
from dinobench.utils.seeding import seed_from


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
            torch.manual_seed(seed_from(self.seed, iteration, index))
            crops = self.augmentation(image)
        return crops, label, iteration


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
        rng = random.Random(seed_from(self.seed, iteration, 7))
        out = collate_data_and_cast(samples, self.ratio, self.probability, torch.float32, n_tokens=self.n_tokens,
                                    mask_generator=self.mask_generator, rng=rng, world_size=self.world, rank=self.rank)
        out["iteration"] = iteration
        return out
