"""Multi-head self-attention with SDPA, RoPE on patch tokens only, optional masked K bias."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.backbones.layers.rope import apply_rope


class LinearKMaskedBias(nn.Linear):
    """qkv projection whose K-part bias is multiplied by a 0 mask (DINOv3 ``mask_k_bias``).

    The mask is a persistent buffer ``bias_mask`` (present in official checkpoints).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if out_features % 3:
            raise ValueError("qkv out_features must be a multiple of 3")
        if self.bias is not None:
            mask = torch.ones(out_features, device=device, dtype=dtype)
            if not mask.is_meta:
                mask[out_features // 3 : 2 * out_features // 3] = 0
            self.register_buffer("bias_mask", mask)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        bias = self.bias * self.bias_mask.to(self.bias.dtype) if self.bias is not None else None
        return F.linear(x, self.weight, bias)


class SelfAttention(nn.Module):
    """Pre-projected qkv -> SDPA -> output projection. ``rope=(sin, cos)`` rotates patch tokens."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        mask_k_bias: bool = False,
        device=None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        linear = LinearKMaskedBias if mask_k_bias else nn.Linear
        self.qkv = linear(dim, dim * 3, bias=qkv_bias, device=device)
        self.proj = nn.Linear(dim, dim, bias=proj_bias, device=device)

    def _rope(self, q: Tensor, k: Tensor, rope: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        sin, cos = rope
        n_prefix = q.shape[-2] - sin.shape[-2]  # cls + storage tokens are not rotated
        out = []
        for t in (q, k):
            t_rope = t.to(sin.dtype)
            rotated = apply_rope(t_rope[:, :, n_prefix:], sin, cos)
            out.append(torch.cat([t_rope[:, :, :n_prefix], rotated], dim=-2).to(t.dtype))
        return out[0], out[1]

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:  # noqa: D102
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        if rope is not None:
            q, k = self._rope(q, k, rope)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))
