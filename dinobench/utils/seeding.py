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
    """A stable 63-bit seed from integers (numpy's SeedSequence hashing)."""
    import numpy as np

    state = np.random.SeedSequence([int(v) & 0xFFFFFFFF for v in values]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31 | int(state[1]) >> 1) & 0x7FFFFFFFFFFFFFFF
