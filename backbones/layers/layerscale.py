"""Per-channel residual scaling (LayerScale, CaiT)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LayerScale(nn.Module):
    """``x * gamma`` with ``gamma`` initialised to ``init_values``."""

    def __init__(self, dim: int, init_values: float = 1e-5, device=None) -> None:
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values), device=device))

    def reset_parameters(self) -> None:
        """Refill gamma with ``init_values``."""
        nn.init.constant_(self.gamma, self.init_values)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return x * self.gamma
