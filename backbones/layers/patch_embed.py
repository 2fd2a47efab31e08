"""Non-overlapping patch embedding: ``[B, C, H, W] -> [B, H/p, W/p, D]``."""

from __future__ import annotations

import math

from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """A strided convolution with kernel = stride = patch size."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768, device=None) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, device=device)

    def reset_parameters(self) -> None:
        """Uniform(+-1/sqrt(fan_in)) as in the official initialisation."""
        bound = math.sqrt(1 / (self.in_chans * self.patch_size**2))
        nn.init.uniform_(self.proj.weight, -bound, bound)
        if self.proj.bias is not None:
            nn.init.uniform_(self.proj.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.proj(x).permute(0, 2, 3, 1)  # [B, h, w, D]
