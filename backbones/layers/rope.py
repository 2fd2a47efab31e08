"""Axial 2-D rotary position embedding (RoPE) as in DINOv3: no learned weights, patch tokens only.

Coordinates are patch centres normalised to [-1, 1]; per head, the first half of the channels
rotate with the row coordinate and the second half with the column coordinate.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn


def rotate_half(x: Tensor) -> Tensor:
    """``[a, b] -> [-b, a]`` on the last dimension (the RoPE pairing of DINOv3)."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor) -> Tensor:
    """Rotate ``x [..., N, D]`` by angles given as ``sin``/``cos`` ``[N, D]``."""
    return x * cos + rotate_half(x) * sin


class RopePositionEmbedding(nn.Module):
    """Produces ``(sin, cos)`` of shape ``[H*W, D_head]`` for an ``H x W`` patch grid.

    ``periods`` is a persistent buffer (official checkpoints carry it as
    ``rope_embed.periods``). Training-time coordinate augmentations (shift, jitter, rescale)
    apply only in ``train()`` mode.
    """

    def __init__(
        self,
        embed_dim: int,
        *,
        num_heads: int,
        base: float | None = 100.0,
        min_period: float | None = None,
        max_period: float | None = None,
        normalize_coords: Literal["min", "max", "separate"] = "separate",
        shift_coords: float | None = None,
        jitter_coords: float | None = None,
        rescale_coords: float | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if embed_dim % (4 * num_heads):
            raise ValueError(f"RoPE needs embed_dim ({embed_dim}) divisible by 4*num_heads ({4 * num_heads})")
        if (base is None) == (min_period is None or max_period is None):
            raise ValueError("RoPE takes either `base` or both `min_period` and `max_period`")
        self.head_dim = embed_dim // num_heads
        self.base, self.min_period, self.max_period = base, min_period, max_period
        self.normalize_coords = normalize_coords
        self.shift_coords, self.jitter_coords, self.rescale_coords = shift_coords, jitter_coords, rescale_coords
        self.dtype = dtype
        self.register_buffer("periods", torch.empty(self.head_dim // 4, device=device, dtype=dtype), persistent=True)
        self._tables: dict[tuple, tuple[Tensor, Tensor]] = {}
        self.reset_parameters()

    @property
    def augments(self) -> bool:
        """Whether a call draws random coordinate augmentations (train mode with shift, jitter or rescale)."""
        return self.training and any(v is not None for v in (self.shift_coords, self.jitter_coords,
                                                             self.rescale_coords))

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .half(): new periods tensor, stale tables
        self._tables = {}
        return super()._apply(fn, recurse)

    def reset_parameters(self) -> None:
        """Recompute the periods (geometric in ``base`` or between min and max period)."""
        self._tables = {}
        quarter = self.head_dim // 4
        if self.periods.is_meta:
            return
        idx = torch.arange(quarter, device=self.periods.device, dtype=self.dtype)
        if self.base is not None:
            periods = self.base ** (2 * idx / (self.head_dim // 2))
        else:
            ratio = self.max_period / self.min_period
            exponents = torch.linspace(0, 1, quarter, device=self.periods.device, dtype=self.dtype)
            periods = ratio**exponents / ratio * self.max_period
        self.periods.copy_(periods)

    def _coords(self, height: int, width: int) -> Tensor:
        kw = {"device": self.periods.device, "dtype": self.dtype}
        if self.normalize_coords == "separate":
            denom_h, denom_w = height, width
        elif self.normalize_coords == "max":
            denom_h = denom_w = max(height, width)
        elif self.normalize_coords == "min":
            denom_h = denom_w = min(height, width)
        else:
            raise ValueError(f"unknown normalize_coords {self.normalize_coords!r}")
        rows = torch.arange(0.5, height, **kw) / denom_h
        cols = torch.arange(0.5, width, **kw) / denom_w
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).flatten(0, 1)
        coords = 2.0 * coords - 1.0  # [H*W, 2] in [-1, 1]
        if self.training:
            if self.shift_coords is not None:
                coords = coords + torch.empty(2, **kw).uniform_(-self.shift_coords, self.shift_coords)
            if self.jitter_coords is not None:
                log_j = math.log(self.jitter_coords)
                coords = coords * torch.empty(2, **kw).uniform_(-log_j, log_j).exp()
            if self.rescale_coords is not None:
                log_r = math.log(self.rescale_coords)
                coords = coords * torch.empty(1, **kw).uniform_(-log_r, log_r).exp()
        return coords

    def forward(self, *, H: int, W: int) -> tuple[Tensor, Tensor]:  # noqa: N803 - official names
        """``(sin, cos)``, each ``[H*W, D_head]`` in ``self.dtype``. Without augmentation the tables depend only on
        the grid and the periods, so they are kept per grid size (dropped when the periods change: in-place
        writes such as loading weights bump their version; ``.to()`` / ``reset_parameters`` clear the tables)."""
        if self.augments or torch.compiler.is_compiling():  # a compiled graph computes (and fuses) them itself
            return self._tables_for(H, W)
        key = (H, W, self.periods._version, self.periods.device, self.periods.dtype)
        tables = self._tables.get(key)
        if tables is None:
            if len(self._tables) >= 8:
                self._tables.clear()
            tables = self._tables[key] = self._tables_for(H, W)
        return tables

    def _tables_for(self, H: int, W: int) -> tuple[Tensor, Tensor]:  # noqa: N803
        coords = self._coords(H, W)
        angles = 2 * math.pi * coords[:, :, None] / self.periods[None, None, :]  # [HW, 2, D/4]
        angles = angles.flatten(1, 2).tile(2)  # [HW, D]
        return torch.sin(angles), torch.cos(angles)
