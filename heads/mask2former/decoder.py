"""Mask2Former's masked-attention transformer decoder (Cheng et al., 2022), official DINOv3 settings.

``num_queries`` learned queries (features + positional embeddings) pass ``dec_layers`` post-norm layers,
each: masked cross-attention to one of the three pixel-decoder levels (coarse to fine, round robin; a query
attends only where its current mask prediction is > 0.5, everywhere if that is nowhere), self-attention,
FFN. Before the first layer and after each, a shared prediction head gives class logits
(``num_classes + 1``, the last is "no object") and mask logits (query embedding MLP . mask features).
Returns the last prediction and all earlier ones (``aux_outputs``, deep supervision). Parameter names are
the official ones.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.heads.mask2former.pixel_decoder import PositionEmbeddingSine
from dinobench.heads.mlp import MLP


def _xavier(module: nn.Module) -> None:
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


class SelfAttentionLayer(nn.Module):
    """Post-norm self-attention among queries (positions added to queries and keys)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt: Tensor, query_pos: Tensor) -> Tensor:  # noqa: D102 - [Q, B, C]
        q = k = tgt + query_pos
        return self.norm(tgt + self.dropout(self.self_attn(q, k, value=tgt, need_weights=False)[0]))


class CrossAttentionLayer(nn.Module):
    """Post-norm (masked) cross-attention from the queries to one level's pixels."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor | None, pos: Tensor,
                query_pos: Tensor) -> Tensor:  # noqa: D102
        out = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory, attn_mask=memory_mask,
                                  need_weights=False)[0]
        return self.norm(tgt + self.dropout(out))


class FFNLayer(nn.Module):
    """Post-norm ReLU FFN."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        _xavier(self)

    def forward(self, tgt: Tensor) -> Tensor:  # noqa: D102
        return self.norm(tgt + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class MultiScaleMaskedTransformerDecoder(nn.Module):
    """See the module docstring. Input maps must have ``hidden_dim`` channels (no input projection)."""

    def __init__(self, num_classes: int, hidden_dim: int, num_queries: int = 100, nheads: int = 16,
                 dim_feedforward: int = 4096, dec_layers: int = 9, mask_dim: int | None = None) -> None:
        super().__init__()
        mask_dim = hidden_dim if mask_dim is None else mask_dim
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.num_heads, self.num_layers, self.num_queries = nheads, dec_layers, num_queries
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, nheads) for _ in range(dec_layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(hidden_dim, dim_feedforward) for _ in range(dec_layers))
        self.post_norm = nn.LayerNorm(hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.num_feature_levels = 3
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList(nn.Sequential() for _ in range(self.num_feature_levels))
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    def prediction_heads(self, output: Tensor, mask_features: Tensor,
                         target_size: Sequence[int]) -> tuple[Tensor, Tensor, Tensor]:
        """(class logits ``[B, Q, K+1]``, mask logits ``[B, Q, H, W]``, the next layer's attention mask
        ``[B*heads, Q, h*w]``, True = do not attend) of the queries ``output`` ``[Q, B, C]``."""
        decoded = self.post_norm(output).transpose(0, 1)
        logits = self.class_embed(decoded)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(decoded), mask_features)
        attn = F.interpolate(masks, size=tuple(target_size), mode="bilinear", align_corners=False)
        attn = attn.sigmoid().flatten(2).unsqueeze(1).repeat(1, self.num_heads, 1, 1).flatten(0, 1) < 0.5
        return logits, masks, attn.detach()

    def forward(self, x: Sequence[Tensor], mask_features: Tensor) -> dict:
        """``x``: the 3 pixel-decoder maps (coarse to fine); ``mask_features`` ``[B, C, H/4, W/4]``."""
        if len(x) != self.num_feature_levels:
            raise ValueError(f"the decoder reads {self.num_feature_levels} levels, got {len(x)}")
        sizes = [level.shape[-2:] for level in x]
        pos = [self.pe_layer(level).flatten(2).permute(2, 0, 1) for level in x]
        src = [(self.input_proj[i](level).flatten(2) + self.level_embed.weight[i][None, :, None]).permute(2, 0, 1)
               for i, level in enumerate(x)]
        batch = src[0].shape[1]
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)
        output = self.query_feat.weight.unsqueeze(1).repeat(1, batch, 1)
        logits, masks, attn = self.prediction_heads(output, mask_features, sizes[0])
        all_logits, all_masks = [logits], [masks]
        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            attn[torch.where(attn.sum(-1) == attn.shape[-1])] = False  # nowhere -> everywhere
            output = self.transformer_cross_attention_layers[i](output, src[level], attn, pos[level], query_pos)
            output = self.transformer_self_attention_layers[i](output, query_pos)
            output = self.transformer_ffn_layers[i](output)
            logits, masks, attn = self.prediction_heads(output, mask_features, sizes[(i + 1) % self.num_feature_levels])
            all_logits.append(logits)
            all_masks.append(masks)
        return {"pred_logits": all_logits[-1], "pred_masks": all_masks[-1],
                "aux_outputs": [{"pred_logits": a, "pred_masks": b} for a, b in zip(all_logits[:-1], all_masks[:-1])]}
