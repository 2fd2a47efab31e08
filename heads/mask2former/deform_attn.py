"""Multi-scale deformable attention (Zhu et al., Deformable DETR) in pure PyTorch, with autograd.

Every query gathers, per head, ``P`` bilinear samples on each of ``L`` feature levels at learned offsets
around its reference point, and sums them with softmax weights. The official release evaluates this with
``grid_sample`` but needs a compiled CUDA extension for the backward; here ``grid_sample``'s own autograd
does it, on any device. Memory: the sampled values ``[N*M, D, Lq, L*P]`` dominate, so long query sets are
processed in chunks, and under autograd each chunk is recomputed in the backward (activation
checkpointing) instead of keeping its samples.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

#: queries per chunk when a call does not say (bounded memory at 512-896 px with hidden dim 2048)
DEFAULT_CHUNK = 4096


def _level_sizes(spatial_shapes: Tensor | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    if isinstance(spatial_shapes, Tensor):
        spatial_shapes = spatial_shapes.tolist()
    return [(int(h), int(w)) for h, w in spatial_shapes]


def _deform_attn(value: Tensor, sizes: list[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    batch, _, heads, dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    grids = 2 * locations - 1  # grid_sample's [-1, 1] frame, align_corners=False
    sampled = []
    start = 0
    for level, (h, w) in enumerate(sizes):
        # [N, h*w, M, D] -> [N*M, D, h, w]
        level_value = value[:, start:start + h * w].permute(0, 2, 3, 1).reshape(batch * heads, dim, h, w)
        start += h * w
        # [N, Lq, M, P, 2] -> [N*M, Lq, P, 2]
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(level_value, grid, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # [N*M, D, Lq, P]
    # [N, Lq, M, L, P] -> [N*M, 1, Lq, L*P]
    attn = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * attn).sum(-1)  # [N*M, D, Lq]
    return out.view(batch, heads * dim, queries).transpose(1, 2)


def ms_deform_attn(value: Tensor, spatial_shapes: Tensor | Sequence[Sequence[int]], sampling_locations: Tensor,
                   attention_weights: Tensor, chunk_size: int | None = DEFAULT_CHUNK) -> Tensor:
    """``[N, Lq, M*D]``: for each query and head, the ``attention_weights``-weighted sum of bilinear samples
    of ``value`` (``[N, S, M, D]``, levels of ``spatial_shapes`` ``[L, 2]`` as (H, W) flattened row-major and
    concatenated) at ``sampling_locations`` (``[N, Lq, M, L, P, 2]``, (x, y) in [0, 1]; zero outside).
    ``attention_weights``: ``[N, Lq, M, L, P]``. ``chunk_size`` queries at a time (None: all at once)."""
    sizes = _level_sizes(spatial_shapes)
    if value.shape[1] != sum(h * w for h, w in sizes):
        raise ValueError(f"value has {value.shape[1]} positions but spatial_shapes {sizes} cover "
                         f"{sum(h * w for h, w in sizes)}")
    queries = sampling_locations.shape[1]
    if chunk_size is None or queries <= chunk_size:
        return _deform_attn(value, sizes, sampling_locations, attention_weights)
    recompute = torch.is_grad_enabled() and any(
        t.requires_grad for t in (value, sampling_locations, attention_weights))
    outs = []
    for start in range(0, queries, chunk_size):
        loc = sampling_locations[:, start:start + chunk_size]
        att = attention_weights[:, start:start + chunk_size]
        if recompute:
            outs.append(checkpoint(_deform_attn, value, sizes, loc, att, use_reentrant=False))
        else:
            outs.append(_deform_attn(value, sizes, loc, att))
    return torch.cat(outs, dim=1)


class MSDeformAttn(nn.Module):
    """The deformable-attention layer of Deformable DETR / ViT-Adapter (official parameter names):
    ``value_proj`` (to ``ratio * d_model`` channels), ``sampling_offsets`` and ``attention_weights`` from
    the query, ``output_proj`` back to ``d_model``."""

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 ratio: float = 1.0) -> None:
        super().__init__()
        value_dim = int(d_model * ratio)
        if d_model % n_heads or value_dim % n_heads:
            raise ValueError(f"d_model={d_model} (value dim {value_dim}) is not divisible by n_heads={n_heads}")
        self.d_model, self.n_levels, self.n_heads, self.n_points, self.ratio = d_model, n_levels, n_heads, n_points, ratio
        self.chunk_size: int | None = DEFAULT_CHUNK
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, value_dim)
        self.output_proj = nn.Linear(value_dim, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: zero offsets weights, offset biases on a ring of directions (one per head)
        scaled by the point index, uniform attention, Xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        ring = torch.stack([angles.cos(), angles.sin()], -1)
        ring = ring / ring.abs().max(-1, keepdim=True)[0]
        grid = ring.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1)
        grid = grid * torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: Tensor, reference_points: Tensor, input_flatten: Tensor, spatial_shapes: Tensor,
                padding_mask: Tensor | None = None) -> Tensor:
        """``query`` ``[N, Lq, C]``; ``reference_points`` ``[N, Lq, L, 2]`` in [0, 1] (or ``[N, Lq, L, 4]``
        boxes); ``input_flatten`` ``[N, S, C]``; ``padding_mask`` ``[N, S]`` True where padded."""
        batch, queries, _ = query.shape
        positions = input_flatten.shape[1]
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(batch, positions, self.n_heads, -1)
        offsets = self.sampling_offsets(query).view(batch, queries, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(batch, queries, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(batch, queries, self.n_heads, self.n_levels, self.n_points)
        if reference_points.shape[-1] == 2:  # offsets in units of each level's cells, (x, y)
            normalizer = torch.stack([spatial_shapes[..., 1], spatial_shapes[..., 0]], -1).to(offsets.dtype)
            locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        elif reference_points.shape[-1] == 4:  # offsets relative to half the box size
            locations = (reference_points[:, :, None, :, None, :2]
                         + offsets / self.n_points * reference_points[:, :, None, :, None, 2:] * 0.5)
        else:
            raise ValueError(f"reference_points must end in 2 or 4 values, got {reference_points.shape[-1]}")
        out = ms_deform_attn(value, spatial_shapes, locations, weights, self.chunk_size)
        return self.output_proj(out)
