"""Plain-DETR's transformer: optional post-norm encoder over the single-scale memory, two-stage proposals
(the memory expanded to ``proposal_feature_levels`` strides, one proposal per position, the top-scoring
ones become the decoder's reference boxes) and the global decoder. ``reparam=True`` keeps boxes in absolute
pixels with delta re-parameterisation; otherwise in normalised logit space (Deformable DETR). Parameter names
follow the official module."""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.heads.plain_detr.backbone import LayerNorm2D, resize_mask
from dinobench.heads.plain_detr.boxes import delta2bbox, xyxy_to_cxcywh
from dinobench.heads.plain_detr.decoder import GlobalDecoder

ENCODER_FFN, ENCODER_DROPOUT = 2048, 0.1  # the official encoder's fixed width and dropout


class EncoderLayer(nn.Module):
    """Post-norm self-attention + ReLU FFN over the flattened memory (padding masked)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = ENCODER_FFN,
                 dropout: float = ENCODER_DROPOUT) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.0, batch_first=True)
        self.linear1, self.dropout = nn.Linear(d_model, dim_feedforward), nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src: Tensor, padding: Tensor | None, pos: Tensor | None) -> Tensor:  # noqa: D102
        q = src if pos is None else src + pos
        attn = self.self_attn(q, q, value=src, key_padding_mask=padding, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attn))
        return self.norm2(src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(src))))))


class Encoder(nn.Module):
    """``num_layers`` encoder layers (official ``TransformerEncoder`` without a final norm)."""

    def __init__(self, d_model: int, nhead: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(d_model, nhead) for _ in range(num_layers)])
        self.num_layers = num_layers

    def forward(self, src: Tensor, padding: Tensor | None, pos: Tensor | None) -> Tensor:  # noqa: D102
        for layer in self.layers:
            src = layer(src, padding, pos)
        return src


def _resampler(d_model: int, in_stride: int, stride: int) -> nn.Module:
    """Identity, or stride-2 (transposed) convolutions with LayerNorm + GELU between them."""
    if stride == in_stride:
        return nn.Identity()
    conv = nn.Conv2d if stride > in_stride else nn.ConvTranspose2d
    steps = int(math.log2(max(stride, in_stride) / min(stride, in_stride)))
    layers: list[nn.Module] = []
    for _ in range(steps - 1):
        layers += [conv(d_model, d_model, kernel_size=2, stride=2), LayerNorm2D(d_model), nn.GELU()]
    layers.append(conv(d_model, d_model, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class PlainDetrTransformer(nn.Module):
    """Encoder -> (two-stage) proposals -> decoder; see the module docstring."""

    def __init__(self, decoder: GlobalDecoder, *, d_model: int = 256, nhead: int = 8, num_feature_levels: int = 1,
                 two_stage: bool = False, two_stage_num_proposals: int = 300, mixed_selection: bool = False,
                 proposal_feature_levels: int = 1, proposal_in_stride: int = 16,
                 proposal_tgt_strides: Sequence[int] = (8, 16, 32, 64), proposal_min_size: float = 50,
                 add_transformer_encoder: bool = False, num_encoder_layers: int = 6, reparam: bool = False) -> None:
        super().__init__()
        self.d_model, self.nhead, self.two_stage = d_model, nhead, two_stage
        self.two_stage_num_proposals, self.mixed_selection, self.reparam = two_stage_num_proposals, mixed_selection, reparam
        self.decoder = decoder
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        if two_stage:
            self.enc_output, self.enc_output_norm = nn.Linear(d_model, d_model), nn.LayerNorm(d_model)
            self.pos_trans, self.pos_trans_norm = nn.Linear(2 * d_model, 2 * d_model), nn.LayerNorm(2 * d_model)
        else:
            self.reference_points = nn.Linear(d_model, 2)
        self.proposal_feature_levels = proposal_feature_levels
        self.proposal_tgt_strides = list(proposal_tgt_strides)
        self.proposal_min_size = proposal_min_size
        self.proposal_in_stride = proposal_in_stride
        if two_stage and proposal_feature_levels > 1:
            if len(self.proposal_tgt_strides) != proposal_feature_levels:
                raise ValueError(f"proposal_tgt_strides={self.proposal_tgt_strides} must have "
                                 f"proposal_feature_levels={proposal_feature_levels} entries")
            self.enc_output_proj = nn.ModuleList([_resampler(d_model, proposal_in_stride, s)
                                                  for s in self.proposal_tgt_strides])
        self.encoder = Encoder(d_model, nhead, num_encoder_layers) if add_transformer_encoder else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices, normal level embeddings, then the decoder's own init (official order)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        if not self.two_stage:
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)
        self.decoder.reset_parameters()

    def proposal_pos_embed(self, proposals: Tensor) -> Tensor:
        """Sine embedding ``[N, L, 2 * d_model]`` of the 4 box coordinates (``d_model / 2`` features each)."""
        feats = self.d_model // 2
        dim_t = torch.arange(feats, dtype=torch.float32, device=proposals.device)
        dim_t = 10000 ** (2 * (dim_t // 2) / feats)
        pos = proposals[..., None] * (2 * math.pi) / dim_t
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(2)

    def expand_memory(self, memory: Tensor, padding: Tensor,
                      shapes: list[tuple[int, int]]) -> tuple[Tensor, Tensor, list[tuple[int, int]]]:
        """The single-level memory resampled to every proposal stride, flattened and concatenated."""
        if len(shapes) != 1:
            raise ValueError(f"proposals over several strides need one memory level, got {len(shapes)}")
        b, _, c = memory.shape
        h, w = shapes[0]
        grid = memory.view(b, h, w, c).permute(0, 3, 1, 2)
        mask = padding.view(b, h, w)
        maps = [proj(grid) for proj in self.enc_output_proj]
        masks = [resize_mask(mask, m.shape[-2:]) for m in maps]
        return (torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1), torch.cat([m.flatten(1) for m in masks], 1),
                [tuple(m.shape[-2:]) for m in maps])

    def _grid(self, h: int, w: int, device: torch.device) -> Tensor:
        ys, xs = torch.meshgrid(torch.linspace(0, h - 1, h, dtype=torch.float32, device=device),
                                torch.linspace(0, w - 1, w, dtype=torch.float32, device=device), indexing="ij")
        return torch.stack([xs, ys], -1)

    def encoder_proposals(self, memory: Tensor, padding: Tensor, shapes: list[tuple[int, int]]) -> tuple[Any, ...]:
        """(projected memory, one proposal per position, ``max_shape``): with ``reparam`` pixel boxes centred on
        each position, ``proposal_min_size * 2**level`` wide, invalid ones set to the image's longer side;
        otherwise normalised boxes ``0.05 * 2**level`` wide in logit space, invalid ones ``inf``."""
        if self.proposal_feature_levels > 1:
            memory, padding, shapes = self.expand_memory(memory, padding, shapes)
        n = memory.shape[0]
        proposals = []
        start = 0
        for lvl, (h, w) in enumerate(shapes):
            grid = self._grid(h, w, memory.device)[None].expand(n, -1, -1, -1)
            if self.reparam:
                centres = (grid + 0.5) * self.proposal_tgt_strides[lvl]
                wh = torch.full_like(centres, self.proposal_min_size * 2.0 ** lvl)
            else:
                level_mask = padding[:, start:start + h * w].view(n, h, w)
                valid = torch.stack([(~level_mask[:, 0, :]).sum(1), (~level_mask[:, :, 0]).sum(1)], -1)
                centres = (grid + 0.5) / valid.view(n, 1, 1, 2)
                wh = torch.full_like(centres, 0.05 * 2.0 ** lvl)
            proposals.append(torch.cat([centres, wh], -1).view(n, -1, 4))
            start += h * w
        proposals = torch.cat(proposals, 1)
        max_shape = None
        if self.reparam:
            h, w = shapes[0]
            stride = self.proposal_tgt_strides[0]
            first = padding[:, : h * w].view(n, h, w)
            valid_h = (~first[:, :, 0]).sum(1, keepdim=True) * stride
            valid_w = (~first[:, 0, :]).sum(1, keepdim=True) * stride
            size = torch.cat([valid_w, valid_h, valid_w, valid_h], -1)[:, None]
            ok = ((proposals > 0.01 * size) & (proposals < 0.99 * size)).all(-1, keepdim=True)
            fill = float(max(h, w) * stride)
            proposals = proposals.masked_fill(padding[..., None], fill).masked_fill(~ok, fill)
            max_shape = (valid_h[:, None, :], valid_w[:, None, :])
        else:
            ok = ((proposals > 0.01) & (proposals < 0.99)).all(-1, keepdim=True)
            proposals = torch.log(proposals / (1 - proposals))
            proposals = proposals.masked_fill(padding[..., None], float("inf")).masked_fill(~ok, float("inf"))
        memory = memory.masked_fill(padding[..., None], 0.0).masked_fill(~ok, 0.0)
        return self.enc_output_norm(self.enc_output(memory)), proposals, max_shape

    def two_stage_references(self, memory: Tensor, padding: Tensor, shapes: list[tuple[int, int]],
                             num_proposals: int) -> tuple[Any, ...]:
        """(top-``num_proposals`` reference boxes by their class-0 logit (detached), ``max_shape``,
        the proposals' class logits, boxes, deltas, and the raw proposals)."""
        assert self.decoder.class_embed is not None and self.decoder.bbox_embed is not None
        output, proposals, max_shape = self.encoder_proposals(memory, padding, shapes)
        layer = self.decoder.num_layers
        logits = self.decoder.class_embed[layer](output)
        if self.reparam:
            deltas = self.decoder.bbox_embed[layer](output)
            boxes = xyxy_to_cxcywh(delta2bbox(proposals, deltas, max_shape))
        else:
            deltas = None
            boxes = self.decoder.bbox_embed[layer](output) + proposals
        top = torch.topk(logits[..., 0], num_proposals, dim=1)[1]
        reference = torch.gather(boxes, 1, top[..., None].expand(-1, -1, 4)).detach()
        if not self.reparam:
            reference = reference.sigmoid()
        return reference, max_shape, logits, boxes, deltas, proposals

    @staticmethod
    def valid_ratio(mask: Tensor) -> Tensor:
        """``[B, 2]`` unpadded (width, height) fractions."""
        _, h, w = mask.shape
        return torch.stack([(~mask[:, 0, :]).sum(1).float() / w, (~mask[:, :, 0]).sum(1).float() / h], -1)

    def forward(self, srcs: list[Tensor], masks: list[Tensor], pos_embeds: list[Tensor],
                query_embed: Tensor | None = None, self_attn_mask: Tensor | None = None,
                num_proposals: int | None = None) -> tuple[Any, ...]:
        """(decoder outputs, initial and per-layer references, proposal logits/boxes/deltas, proposals,
        ``max_shape``), as the official transformer; ``num_proposals`` defaults to ``two_stage_num_proposals``."""
        shapes = [tuple(s.shape[-2:]) for s in srcs]
        src = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
        padding = torch.cat([m.flatten(1) for m in masks], 1)
        pos = torch.cat([p.flatten(2).transpose(1, 2) + self.level_embed[i].view(1, 1, -1)
                         for i, p in enumerate(pos_embeds)], 1)
        valid_ratios = torch.stack([self.valid_ratio(m) for m in masks], 1)
        memory = self.encoder(src, padding, pos) if self.encoder is not None else src
        b, _, c = memory.shape
        logits = boxes = deltas = proposals = None
        if self.two_stage:
            reference, max_shape, logits, boxes, deltas, proposals = self.two_stage_references(
                memory, padding, shapes, num_proposals or self.two_stage_num_proposals)
            pos_trans = self.pos_trans_norm(self.pos_trans(self.proposal_pos_embed(reference)))
            if self.mixed_selection:
                assert query_embed is not None
                tgt = query_embed[None].expand(b, -1, -1)
                query_pos = pos_trans[..., :c]
            else:
                query_pos, tgt = torch.split(pos_trans, c, dim=2)
        else:
            assert query_embed is not None
            query_pos, tgt = torch.split(query_embed, c, dim=1)
            query_pos, tgt = query_pos[None].expand(b, -1, -1), tgt[None].expand(b, -1, -1)
            reference = self.reference_points(query_pos).sigmoid()
            max_shape = None
        hs, inter = self.decoder(tgt, reference, memory, pos, shapes, valid_ratios, query_pos, padding, self_attn_mask,
                                 max_shape)
        return hs, reference, inter, logits, boxes, deltas, proposals, max_shape
