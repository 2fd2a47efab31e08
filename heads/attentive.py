"""Attentive probe: a few attention blocks over frozen patch tokens, pooled by a learnable query.

The model card's 4-layer attention probe (the V-JEPA-style attentive classifier): ``depth - 1`` pre-norm
self-attention blocks over the tokens, then one cross-attention block in which ``num_queries`` learnable
query tokens attend to them, a LayerNorm and a linear classifier on the (mean of the) query outputs.
Video clips ``[B, T, h, w, D]`` get a learnable temporal position embedding added per frame before the
tokens are flattened; with ``num_patches`` a learnable spatial position embedding is added per patch too
(frozen RoPE backbones put positions into attention, not into the tokens: without it a probe hardly knows
where a token is, which motion needs). :class:`ProbeGrid` trains several probes at once,
one per learning rate, each in its own optimizer group.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn



class _Attention(nn.Module):
    """Multi-head attention of ``query`` tokens onto ``context`` tokens (SDPA)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        batch, n_q, dim = query.shape
        heads, head_dim = self.num_heads, dim // self.num_heads
        q = self.q(query).reshape(batch, n_q, heads, head_dim).transpose(1, 2)
        k, v = self.kv(context).reshape(batch, context.shape[1], 2, heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, n_q, dim))


class AttentionBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x), norm(context))`` then ``x + mlp(norm(x))``; self-attention when
    ``context`` is None."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(dim)
        self.attn = _Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        query = self.norm1(x)
        x = x + self.attn(query, query if context is None else self.norm_context(context))
        return x + self.mlp(self.norm2(x))


class AttentiveProbe(nn.Module):
    """``depth - 1`` self-attention blocks, one cross-attention block from learnable queries, norm, linear."""

    def __init__(self, dim: int, num_classes: int, *, depth: int = 4, num_heads: int = 1, mlp_ratio: float = 4.0,
                 num_queries: int = 1, num_frames: int = 0, num_patches: int = 0) -> None:
        super().__init__()
        if depth < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"attentive probe: depth {depth} >= 1 and num_heads {num_heads} dividing dim {dim}")
        self.temporal_embed = nn.Parameter(torch.zeros(1, num_frames, 1, dim)) if num_frames else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, dim)) if num_patches else None
        self.blocks = nn.ModuleList(AttentionBlock(dim, num_heads, mlp_ratio) for _ in range(depth - 1))
        self.query = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.cross = AttentionBlock(dim, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Truncated-normal(0.02) linear weights and tokens, zero biases, unit LayerNorms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.query, std=0.02)
        for embed in (self.temporal_embed, self.pos_embed):
            if embed is not None:
                nn.init.trunc_normal_(embed, std=0.02)

    def tokens(self, features: Tensor) -> Tensor:
        """``[B, N, D]`` tokens of image ``[B, h, w, D]`` / ``[B, N, D]`` or clip ``[B, T, h, w, D]`` features."""
        if features.ndim == 5:
            if self.temporal_embed is None or features.shape[1] != self.temporal_embed.shape[1]:
                expected = 0 if self.temporal_embed is None else self.temporal_embed.shape[1]
                raise ValueError(f"attentive probe built for {expected} frames got clips of {features.shape[1]}")
            features = features + self.temporal_embed[:, :, None]
        batch, dim = features.shape[0], features.shape[-1]
        if self.pos_embed is not None:
            grid = features.reshape(batch, -1, self.pos_embed.shape[1], dim) if features.ndim == 5 else \
                features.reshape(batch, 1, -1, dim)
            if grid.shape[2] != self.pos_embed.shape[1]:
                raise ValueError(f"attentive probe built for {self.pos_embed.shape[1]} patches got {grid.shape[2]}")
            features = grid + self.pos_embed[:, None]
        return features.reshape(batch, -1, dim)

    def forward(self, features: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]``."""
        x = self.tokens(features.float())
        for block in self.blocks:
            x = block(x)
        pooled = self.cross(self.query.expand(x.shape[0], -1, -1), x)
        return self.head(self.norm(pooled).mean(dim=1))


class ProbeGrid(nn.Module):
    """One :class:`AttentiveProbe` per learning rate; ``forward`` -> ``[P, B, C]`` logits of every probe.

    ``param_groups()`` gives each probe its own group with ``lr_multiplier = lr / base_lr`` (the engine's
    schedule runs at ``base_lr``); ``head`` is the module a head checkpoint holds (all probes)."""

    def __init__(self, learning_rates: Sequence[float], base_lr: float, **probe_kwargs: Any) -> None:
        super().__init__()
        self.learning_rates, self.base_lr = [float(lr) for lr in learning_rates], float(base_lr)
        self.head = nn.ModuleList(AttentiveProbe(**probe_kwargs) for _ in self.learning_rates)

    def param_groups(self) -> list[dict[str, Any]]:
        """One group per probe at its own learning rate (weight decay on all its parameters)."""
        return [{"params": list(probe.parameters()), "lr_multiplier": lr / self.base_lr, "wd_multiplier": 1.0}
                for probe, lr in zip(self.head, self.learning_rates)]

    def forward(self, features: Tensor) -> Tensor:
        """Logits of every probe, stacked ``[P, B, C]``."""
        return torch.stack([probe(features) for probe in self.head])
