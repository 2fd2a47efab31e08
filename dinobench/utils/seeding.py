"""One ``--seed`` seeds everything; derived seeds come from one mixer."""

from __future__ import annotations

import random


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_from(*values: int) -> int:
    """A stable 63-bit seed from integers (a multiply-add fold; the same for every process and platform).

    The one seed mixer of dinobench: data streams (per-epoch permutations, per-sample augmentation),
    model-side randomness and head initialisation all derive their seeds here. It is the fold the SSL data
    stream has always used, so pretraining runs reproduce earlier ones exactly (a SeedSequence-based mixer
    was tried: it changes every random stream, and the toy "it learns" recipe is seed-fragile).
    """
    out = 0x9E3779B97F4A7C15
    for value in values:
        out = (out * 6364136223846793005 + (int(value) & 0xFFFFFFFFFFFFFFFF) + 1442695040888963407) & 0x7FFFFFFFFFFFFFFF
    return out
