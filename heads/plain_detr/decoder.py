"""Plain-DETR's decoder: global cross-attention to the single-scale memory with a decomposed box-relative
position bias (``global_rpe_decomp``), self-attention within query groups, iterative box refinement and
look-forward-twice. Parameter names follow the official module."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from dinobench.backbones.layers.init import init_vit_weights_
from dinobench.heads.plain_detr.boxes import delta2bbox, inverse_sigmoid, xyxy_to_cxcywh


def _rpe_mlp(hidden: int, heads: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, hidden, bias=True), nn.ReLU(inplace=True), nn.Linear(hidden, heads, bias=False))


class GlobalCrossAttention(nn.Module):
    """Multi-head attention from queries to every memory position, biased per head by
    ``mlp_x(dx) + mlp_y(dy)``: the offsets of each position (stride-spaced pixel centres) from the query box's
    left/right (x) and top/bottom (y) edges; padded positions get -100."""

    def __init__(self, dim: int, num_heads: int, rpe_hidden_dim: int = 512, rpe_type: str = "linear",
                 feature_stride: int = 16, reparam: bool = False) -> None:
        super().__init__()
        if rpe_type not in ("linear", "abs_log8"):
            raise ValueError(f"decoder_rpe_type={rpe_type!r}: expected 'linear' or 'abs_log8'")
        self.dim, self.num_heads = dim, num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.rpe_type, self.feature_stride, self.reparam = rpe_type, feature_stride, reparam
        self.cpb_mlp1 = _rpe_mlp(rpe_hidden_dim, num_heads)
        self.cpb_mlp2 = _rpe_mlp(rpe_hidden_dim, num_heads)
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self, reference: Tensor, h: int, w: int) -> Tensor:
        """``[B, heads, Q, h*w]`` from ``reference`` boxes ``[B, Q, 1, 4]`` (cx, cy, w, h)."""
        stride = self.feature_stride
        edges = torch.cat([reference[..., :2] - reference[..., 2:] / 2, reference[..., :2] + reference[..., 2:] / 2],
                          dim=-1)
        if not self.reparam:  # normalised boxes -> pixels
            edges = edges * edges.new_tensor([w * stride, h * stride, w * stride, h * stride])
        pos_x = torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=edges.device)[None, None, :, None] * stride
        pos_y = torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=edges.device)[None, None, :, None] * stride
        dx, dy = edges[..., 0::2] - pos_x, edges[..., 1::2] - pos_y  # [B, Q, w, 2], [B, Q, h, 2]
        if self.rpe_type == "abs_log8":
            dx = torch.sign(dx) * torch.log2(dx.abs() + 1.0) / 3.0
            dy = torch.sign(dy) * torch.log2(dy.abs() + 1.0) / 3.0
        bias = self.cpb_mlp1(dx)[:, :, None] + self.cpb_mlp2(dy)[:, :, :, None]  # [B, Q, h, w, heads]
        return bias.flatten(2, 3).permute(0, 3, 1, 2)

    def forward(self, query: Tensor, reference: Tensor, key_input: Tensor, value_input: Tensor,
                spatial_shapes: list[tuple[int, int]], padding_mask: Tensor | None = None) -> Tensor:  # noqa: D102
        if len(spatial_shapes) != 1:
            raise ValueError("global cross-attention is single-scale: expected one feature level")
        h, w = spatial_shapes[0]
        bias = self.position_bias(reference, int(h), int(w))
        if padding_mask is not None:
            bias = bias + padding_mask[:, None, None] * -100.0
        b, n, c = key_input.shape
        heads = self.num_heads
        k = self.k(key_input).reshape(b, n, heads, c // heads).transpose(1, 2)
        v = self.v(value_input).reshape(b, n, heads, c // heads).transpose(1, 2)
        q = self.q(query).reshape(b, query.shape[1], heads, c // heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.contiguous(), scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(b, query.shape[1], c))


class GlobalDecoderLayer(nn.Module):
    """Self-attention (queries, masked between groups) -> global cross-attention -> FFN, pre- or post-norm."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.0, n_heads: int = 8,
                 norm_type: str = "pre_norm", rpe_hidden_dim: int = 512, rpe_type: str = "linear",
                 feature_stride: int = 16, reparam: bool = False) -> None:
        super().__init__()
        if norm_type not in ("pre_norm", "post_norm"):
            raise ValueError(f"norm_type={norm_type!r}: expected 'pre_norm' or 'post_norm'")
        self.norm_type = norm_type
        self.cross_attn = GlobalCrossAttention(d_model, n_heads, rpe_hidden_dim, rpe_type, feature_stride, reparam)
        self.dropout1, self.norm1 = nn.Dropout(dropout), nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.dropout2, self.norm2 = nn.Dropout(dropout), nn.LayerNorm(d_model)
        self.linear1, self.dropout3 = nn.Linear(d_model, d_ffn), nn.Dropout(dropout)
        self.linear2, self.dropout4 = nn.Linear(d_ffn, d_model), nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def _self(self, x: Tensor, value: Tensor, pos: Tensor | None, mask: Tensor | None) -> Tensor:
        q = x if pos is None else x + pos
        return self.self_attn(q.transpose(0, 1), q.transpose(0, 1), value.transpose(0, 1), attn_mask=mask,
                              need_weights=False)[0].transpose(0, 1)

    def _cross(self, x: Tensor, pos: Tensor | None, reference: Tensor, src: Tensor, src_pos: Tensor | None,
               shapes: list[tuple[int, int]], padding: Tensor | None) -> Tensor:
        return self.cross_attn(x if pos is None else x + pos, reference, src if src_pos is None else src + src_pos,
                               src, shapes, padding)

    def _ffn(self, x: Tensor) -> Tensor:
        return self.linear2(self.dropout3(F.relu(self.linear1(x))))

    def forward(self, tgt: Tensor, query_pos: Tensor | None, reference: Tensor, src: Tensor, src_pos: Tensor | None,
                shapes: list[tuple[int, int]], padding: Tensor | None = None,
                self_attn_mask: Tensor | None = None) -> Tensor:  # noqa: D102
        if self.norm_type == "pre_norm":
            x = self.norm2(tgt)
            tgt = tgt + self.dropout2(self._self(x, x, query_pos, self_attn_mask))
            tgt = tgt + self.dropout1(self._cross(self.norm1(tgt), query_pos, reference, src, src_pos, shapes, padding))
            return tgt + self.dropout4(self._ffn(self.norm3(tgt)))
        tgt = self.norm2(tgt + self.dropout2(self._self(tgt, tgt, query_pos, self_attn_mask)))
        tgt = self.norm1(tgt + self.dropout1(self._cross(tgt, query_pos, reference, src, src_pos, shapes, padding)))
        return self.norm3(tgt + self.dropout4(self._ffn(tgt)))


class GlobalDecoder(nn.Module):
    """``num_layers`` decoder layers; after each, the layer's box head refines the reference boxes (detached
    for the next layer); returns every layer's (normed) output and reference boxes - with look-forward-twice
    the refined boxes before detaching, so a layer's loss also trains the previous layer's box head."""

    def __init__(self, layer: GlobalDecoderLayer, num_layers: int, look_forward_twice: bool = False,
                 use_checkpoint: bool = False, d_model: int = 256, norm_type: str = "pre_norm",
                 reparam: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.look_forward_twice, self.use_checkpoint, self.reparam = look_forward_twice, use_checkpoint, reparam
        self.bbox_embed: nn.ModuleList | None = None  # set by the detector (box refinement)
        self.class_embed: nn.ModuleList | None = None  # set by the detector (two-stage)
        self.norm_type = norm_type
        self.final_layer_norm = nn.LayerNorm(d_model) if norm_type == "pre_norm" else None

    def reset_parameters(self) -> None:
        """Truncated-normal (std 0.02) linear weights, zero biases, unit LayerNorms (Swin's init)."""
        init_vit_weights_(self)

    def refine(self, lid: int, output: Tensor, reference: Tensor, max_shape: tuple[Tensor, Tensor] | None) -> Tensor:
        """Layer ``lid``'s refined reference boxes."""
        assert self.bbox_embed is not None
        delta = self.bbox_embed[lid](output)
        if self.reparam:
            return xyxy_to_cxcywh(delta2bbox(reference, delta, max_shape))
        if reference.shape[-1] == 4:
            return (delta + inverse_sigmoid(reference)).sigmoid()
        return torch.cat([delta[..., :2] + inverse_sigmoid(reference), delta[..., 2:]], -1).sigmoid()

    def forward(self, tgt: Tensor, reference: Tensor, src: Tensor, src_pos: Tensor, shapes: list[tuple[int, int]],
                valid_ratios: Tensor, query_pos: Tensor | None = None, padding: Tensor | None = None,
                self_attn_mask: Tensor | None = None,
                max_shape: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:  # noqa: D102
        output, outputs, references = tgt, [], []
        for lid, layer in enumerate(self.layers):
            if self.reparam:
                ref_input = reference[:, :, None]
            elif reference.shape[-1] == 4:
                ref_input = reference[:, :, None] * torch.cat([valid_ratios, valid_ratios], -1)[:, None]
            else:
                ref_input = reference[:, :, None] * valid_ratios[:, None]
            args = (output, query_pos, ref_input, src, src_pos, shapes, padding, self_attn_mask)
            output = checkpoint(layer, *args, use_reentrant=False) if self.use_checkpoint and self.training \
                else layer(*args)
            normed = self.final_layer_norm(output) if self.final_layer_norm is not None else output
            new_reference = reference
            if self.bbox_embed is not None:
                new_reference = self.refine(lid, normed, reference, max_shape)
                reference = new_reference.detach()
            outputs.append(normed)
            references.append(new_reference if self.look_forward_twice else reference)
        return torch.stack(outputs), torch.stack(references)
