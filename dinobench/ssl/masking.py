"""Blockwise patch masking for iBOT (the official DINOv3 ``MaskingGenerator``), with an explicit RNG.

Rectangles with log-uniform aspect ratios are placed until the requested count is reached; the
remainder (when no block fits any more) is filled with random single patches, so a call returns
exactly ``num_masking_patches`` masked patches. Randomness comes from ``rng`` (``random.Random``
or ``numpy.random.Generator``); without one, each call seeds a ``random.Random`` from torch's RNG,
so ``torch.manual_seed`` (as in every DataLoader worker) makes masks reproducible.
"""

from __future__ import annotations

import math
import random
from typing import Sequence, Union

import numpy as np
import torch

RngLike = Union[random.Random, np.random.Generator, None]


class RandomSource:
    """One interface over ``random.Random`` and ``numpy.random.Generator`` (the two RNGs accepted)."""

    def __init__(self, rng: random.Random | np.random.Generator):
        if not isinstance(rng, (random.Random, np.random.Generator)):
            raise TypeError(f"rng must be a random.Random or numpy.random.Generator, got {type(rng).__name__}")
        self.rng = rng
        self.is_numpy = isinstance(rng, np.random.Generator)

    def uniform(self, a: float, b: float) -> float:
        """``a + (b - a) * U[0, 1)``, like ``random.uniform`` (also valid when ``b < a``)."""
        return a + (b - a) * float(self.rng.random())

    def randint(self, a: int, b: int) -> int:
        """An integer in ``[a, b]``, both ends included."""
        return int(self.rng.integers(a, b + 1)) if self.is_numpy else self.rng.randint(a, b)

    def sample(self, population: Sequence[int], k: int) -> list[int]:
        """``k`` distinct items of ``population``."""
        if self.is_numpy:
            return [int(x) for x in self.rng.choice(np.asarray(population), size=k, replace=False)]
        return self.rng.sample(list(population), k)

    def shuffle(self, items: list) -> None:
        """Shuffle ``items`` in place."""
        if self.is_numpy:
            items[:] = [items[i] for i in self.rng.permutation(len(items))]
        else:
            self.rng.shuffle(items)


def resolve_rng(rng: RngLike | RandomSource) -> RandomSource:
    """``rng`` as a ``RandomSource``; ``None`` gives a ``random.Random`` seeded from torch's RNG."""
    if isinstance(rng, RandomSource):
        return rng
    if rng is None:
        rng = random.Random(int(torch.randint(0, 2**62, (1,)).item()))
    return RandomSource(rng)


class MaskingGenerator:
    """Blockwise masks ``[H, W]`` (bool) over a patch grid, as in BEiT/iBOT/DINOv3."""

    def __init__(
        self,
        input_size: int | tuple[int, int],
        num_masking_patches: int | None = None,
        min_num_patches: int = 4,
        max_num_patches: float | None = None,
        min_aspect: float = 0.3,
        max_aspect: float | None = None,
        rng: RngLike = None,
    ):
        if not isinstance(input_size, tuple):
            input_size = (int(input_size),) * 2
        self.height, self.width = input_size
        self.num_patches = self.height * self.width
        self.num_masking_patches = num_masking_patches
        self.min_num_patches = min_num_patches
        # the official falls back to num_masking_patches; with both None it would fail on min(x, None)
        self.max_num_patches = num_masking_patches if max_num_patches is None else max_num_patches
        if self.max_num_patches is None:
            self.max_num_patches = self.num_patches
        max_aspect = max_aspect or 1 / min_aspect
        self.log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))
        self.rng = None if rng is None else RandomSource(rng)

    def __repr__(self) -> str:
        return (
            f"MaskingGenerator({self.height}, {self.width} -> [{self.min_num_patches} ~ {self.max_num_patches}], "
            f"max = {self.num_masking_patches}, {self.log_aspect_ratio[0]:.3f} ~ {self.log_aspect_ratio[1]:.3f})"
        )

    def get_shape(self) -> tuple[int, int]:
        """The patch grid ``(H, W)``."""
        return self.height, self.width

    def sample_block_shape(self, max_mask_patches: float, rng: RngLike | RandomSource = None) -> tuple[int, int]:
        """One block ``(h, w)``: area ~ U[min_num_patches, max_mask_patches], log-uniform aspect ``h / w``."""
        src = self._source(rng)
        target_area = src.uniform(self.min_num_patches, max_mask_patches)
        aspect_ratio = math.exp(src.uniform(*self.log_aspect_ratio))
        h = int(round(math.sqrt(target_area * aspect_ratio)))
        w = int(round(math.sqrt(target_area / aspect_ratio)))
        return h, w

    def _mask(self, mask: np.ndarray, max_mask_patches: float, src: RandomSource) -> int:
        """Try (up to 10 times) to add one block that masks 1..max_mask_patches new patches; returns how many."""
        delta = 0
        for _ in range(10):
            h, w = self.sample_block_shape(max_mask_patches, src)
            if w < self.width and h < self.height:
                top = src.randint(0, self.height - h)
                left = src.randint(0, self.width - w)
                block = mask[top : top + h, left : left + w]
                new = h * w - int(block.sum())
                if 0 < new <= max_mask_patches:
                    block[...] = True
                    delta += new
                if delta > 0:
                    break
        return delta

    def mask_blocks(self, num_masking_patches: int = 0, rng: RngLike | RandomSource = None) -> np.ndarray:
        """Blocks only (no random completion): at most ``num_masking_patches`` masked patches."""
        src = self._source(rng)
        mask = np.zeros(self.get_shape(), dtype=bool)
        mask_count = 0
        while mask_count < num_masking_patches:
            max_mask_patches = min(num_masking_patches - mask_count, self.max_num_patches)
            delta = self._mask(mask, max_mask_patches, src)
            if delta == 0:
                break
            mask_count += delta
        return mask

    def complete_mask_randomly(
        self, mask: np.ndarray, num_masking_patches: int, rng: RngLike | RandomSource = None
    ) -> np.ndarray:
        """Mask random unmasked patches until exactly ``num_masking_patches`` are masked (returns a copy)."""
        flat = mask.flatten()
        missing = int(num_masking_patches) - int(flat.sum())
        if missing < 0 or num_masking_patches > flat.size:
            raise ValueError(f"cannot complete a mask with {int(flat.sum())} of {flat.size} patches "
                             f"to {num_masking_patches}")
        if missing:
            flat[self._source(rng).sample(np.flatnonzero(~flat).tolist(), missing)] = True
        return flat.reshape(mask.shape)

    def __call__(self, num_masking_patches: int = 0, rng: RngLike | RandomSource = None) -> np.ndarray:
        """A bool ``[H, W]`` mask with exactly ``num_masking_patches`` masked patches (``rng`` overrides ``self.rng``)."""
        if num_masking_patches == 0:  # no RNG draw: unmasked samples leave every stream untouched
            return np.zeros(self.get_shape(), dtype=bool)
        src = self._source(rng)
        return self.complete_mask_randomly(self.mask_blocks(num_masking_patches, src), num_masking_patches, src)

    def _source(self, rng: RngLike | RandomSource) -> RandomSource:
        if rng is None and self.rng is not None:
            return self.rng
        return resolve_rng(rng)
