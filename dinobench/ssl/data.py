"""SSL data pipeline: per-sample seeded multi-crop views, a resumable sharded sampler, collation.

Every random draw of the data side depends only on ``(seed, iteration, index)``, so a run gives
the same batches whatever the number of workers, and a resumed run continues the exact stream.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

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


def stack_crops(crops: list[dict[str, list[torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """Crop-major stacks: all samples' crop 0, then all samples' crop 1, ... (official order)."""
    out = {}
    for key, name in (("global_crops", "collated_global_crops"), ("local_crops", "collated_local_crops"),
                      ("gram_teacher_crops", "collated_gram_teacher_crops")):
        if key in crops[0]:
            out[name] = torch.stack([c[key][i] for i in range(len(crops[0][key])) for c in crops])
    return out


class Collate:
    """Picklable collate: stacked crops + blockwise iBOT masks.

    Masks are drawn for the *global* batch (ratios linearly spaced over all ranks' global crops,
    as the official collate does per batch) from an RNG seeded by ``(seed, iteration)``, and each
    rank keeps its rows: the masks do not depend on the number of ranks, so an N-rank run sees
    exactly the batch a single process would.
    """

    def __init__(self, crops_cfg: dict[str, Any], ibot_cfg: dict[str, Any], patch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.grid = crops_cfg["global_crops_size"] // patch_size
        self.n_tokens = self.grid * self.grid
        self.ratio = tuple(ibot_cfg["mask_ratio_min_max"])
        self.probability = ibot_cfg["mask_sample_probability"]
        self.seed, self.rank, self.world = seed, rank, world_size

    def global_masks(self, iteration: int, local_batch: int) -> torch.Tensor:
        """This rank's ``[2 * local_batch, N]`` rows of the global batch's masks (crop-major)."""
        rng = random.Random(_mix(self.seed, iteration, 7))
        generator = MaskingGenerator((self.grid, self.grid), max_num_patches=int(0.5 * self.n_tokens), rng=rng)
        per_crop = local_batch * self.world
        n_total = 2 * per_crop
        n_masked = int(n_total * self.probability)
        ratios = torch.linspace(*self.ratio, n_masked + 1)
        masks = [generator(int(self.n_tokens * float(ratios[i + 1]))) for i in range(n_masked)]
        masks += [generator(0) for _ in range(n_total - n_masked)]
        rng.shuffle(masks)
        stacked = torch.from_numpy(np.stack(masks)).flatten(1).bool()
        start = self.rank * local_batch
        rows = list(range(start, start + local_batch)) + list(range(per_crop + start, per_crop + start + local_batch))
        return stacked[rows]

    def __call__(self, samples: list[tuple[dict, int, int]]) -> dict[str, Any]:
        iteration = samples[0][2]
        out = stack_crops([crops for crops, _, _ in samples])
        masks = self.global_masks(iteration, len(samples))
        out["collated_masks"] = masks
        out["mask_indices_list"] = masks.flatten().nonzero().flatten()
        out["masks_weight"] = (1 / masks.sum(-1).clamp(min=1.0)).unsqueeze(-1).expand_as(masks)[masks]
        out["n_masked_patches"] = torch.full((1,), out["mask_indices_list"].shape[0], dtype=torch.long)
        out["upperbound"] = int(out["mask_indices_list"].shape[0])
        out["iteration"] = iteration
        return out
