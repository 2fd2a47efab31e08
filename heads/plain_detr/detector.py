"""The Plain-DETR detector of the DINOv3 release, with the official parameter names.

:func:`build_plain_detr` takes the fields of the official ``DetectionHeadConfig`` as keyword arguments (defaults
as there; ``layers_to_use``, ``proposal_in_stride`` and ``proposal_tgt_strides`` default as the hub's
``dinov3_vit7b16_de``: four evenly spaced blocks, the patch size, and ``[0.5, 1, 2, 4] x`` the patch size).
In training the detector runs the one-to-one and the one-to-many query groups (hybrid matching; self-attention
masked between them); in eval mode only the one-to-one group, as the hub sets it up for inference.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from dinobench.heads.plain_detr.backbone import Padded, build_detr_backbone
from dinobench.heads.plain_detr.boxes import cxcywh_to_xyxy, delta2bbox, inverse_sigmoid, xyxy_to_cxcywh
from dinobench.heads.plain_detr.decoder import GlobalDecoder, GlobalDecoderLayer
from dinobench.heads.plain_detr.transformer import PlainDetrTransformer
from dinobench.heads.mlp import MLP


class PlainDETR(nn.Module):
    """Backbone features -> 1x1 conv + GroupNorm -> transformer -> per-layer class logits (sigmoid, no
    "no object" class) and boxes. ``reparam``: boxes are absolute ``(cx, cy, w, h)`` pixels; otherwise
    normalised to the unpadded image."""

    def __init__(self, backbone: nn.Module, transformer: PlainDetrTransformer, *, num_classes: int,
                 num_feature_levels: int = 1, aux_loss: bool = True, with_box_refine: bool = False,
                 two_stage: bool = False, num_queries_one2one: int = 300, num_queries_one2many: int = 0,
                 mixed_selection: bool = False, reparam: bool = False) -> None:
        super().__init__()
        self.num_queries = num_queries_one2one + num_queries_one2many
        self.transformer = transformer
        hidden_dim = transformer.d_model
        self.class_embed = nn.Linear(hidden_dim, num_classes)
        self.bbox_embed = MLP(hidden_dim, hidden_dim, 4, 3)
        self.num_feature_levels = num_feature_levels
        if not two_stage:
            self.query_embed = nn.Embedding(self.num_queries, hidden_dim * 2)
        elif mixed_selection:
            self.query_embed = nn.Embedding(self.num_queries, hidden_dim)
        self.input_proj = nn.ModuleList([nn.Sequential(nn.Conv2d(backbone.num_channels[0], hidden_dim, kernel_size=1),
                                                       nn.GroupNorm(32, hidden_dim))])
        self.backbone = backbone
        self.aux_loss, self.with_box_refine, self.two_stage, self.reparam = aux_loss, with_box_refine, two_stage, reparam
        self.num_queries_one2one, self.num_queries_one2many = num_queries_one2one, num_queries_one2many
        self.mixed_selection = mixed_selection
        self._init_heads(num_classes)
        num_pred = transformer.decoder.num_layers + (1 if two_stage else 0)  # the last pair scores proposals
        if with_box_refine:
            self.class_embed = nn.ModuleList([copy.deepcopy(self.class_embed) for _ in range(num_pred)])
            self.bbox_embed = nn.ModuleList([copy.deepcopy(self.bbox_embed) for _ in range(num_pred)])
            nn.init.constant_(self.bbox_embed[0].layers[-1].bias.data[2:], -2.0)
            transformer.decoder.bbox_embed = self.bbox_embed
        else:
            nn.init.constant_(self.bbox_embed.layers[-1].bias.data[2:], -2.0)
            self.class_embed = nn.ModuleList([self.class_embed for _ in range(num_pred)])
            self.bbox_embed = nn.ModuleList([self.bbox_embed for _ in range(num_pred)])
            transformer.decoder.bbox_embed = None
        if two_stage:
            transformer.decoder.class_embed = self.class_embed
            for box_embed in self.bbox_embed:
                nn.init.zeros_(box_embed.layers[-1].bias.data[2:])

    def _init_heads(self, num_classes: int) -> None:
        """Class bias at prior 0.01 (focal loss), zero last box layer, Xavier input projection."""
        nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.zeros_(self.bbox_embed.layers[-1].weight)
        nn.init.zeros_(self.bbox_embed.layers[-1].bias)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

    @property
    def frozen_backbone(self) -> nn.Module:
        """The frozen ViT inside the backbone stack (``backbone.0[._backbone].backbone``)."""
        features = self.backbone[0]
        return getattr(features, "_backbone", features).backbone

    def train(self, mode: bool = True) -> "PlainDETR":  # noqa: D102 - the frozen backbone stays in eval mode
        super().train(mode)
        self.frozen_backbone.eval()
        return self

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The detector without the frozen ViT (the backbone wrapper's layer norms train)."""
        return {name: m for name, m in self.named_children() if name != "backbone"}

    def param_groups(self) -> list[dict[str, Any]]:
        """AdamW groups as Plain-DETR's: weight decay on weights; none on norms, biases, embeddings, the level
        embedding and the position-bias MLPs."""
        decay, no_decay, seen = [], [], set()
        frozen = {id(p) for p in self.frozen_backbone.parameters()}
        for name, param in self.named_parameters():
            if not param.requires_grad or id(param) in frozen or id(param) in seen:
                continue
            seen.add(id(param))
            skip = param.ndim <= 1 or "norm" in name or "level_embed" in name or "query_embed" in name \
                or "cpb_mlp" in name
            (no_decay if skip else decay).append(param)
        return [{"params": decay, "lr_multiplier": 1.0, "wd_multiplier": 1.0},
                {"params": no_decay, "lr_multiplier": 1.0, "wd_multiplier": 0.0}]

    def group_mask(self, n_one2one: int, n_total: int, device: torch.device) -> Tensor:
        """``[Q, Q]`` self-attention mask: True (blocked) between the one-to-one and one-to-many groups."""
        mask = torch.zeros(n_total, n_total, dtype=torch.bool, device=device)
        mask[n_one2one:, :n_one2one] = True
        mask[:n_one2one, n_one2one:] = True
        return mask

    def forward(self, samples: Padded | Sequence[Tensor], all_queries: bool | None = None) -> dict[str, Any]:
        """``pred_logits`` ``[B, Q, C]`` and ``pred_boxes`` ``[B, Q, 4]`` (cx, cy, w, h) of the one-to-one queries
        (plus ``*_one2many``, ``aux_outputs*`` and ``enc_outputs`` for the losses; with ``reparam`` also the
        reference boxes ``pred_boxes_old`` and ``pred_deltas``). ``all_queries`` (default: in training) runs the
        one-to-many group too."""
        if not isinstance(samples, Padded):
            samples = Padded.from_images(list(samples))
        features, pos = self.backbone(samples)
        srcs = [self.input_proj[i](level.tensors) for i, level in enumerate(features)]
        masks = [level.mask for level in features]
        n_queries = self.num_queries if (self.training if all_queries is None else all_queries) else self.num_queries_one2one
        query_embeds = None
        if not self.two_stage or self.mixed_selection:
            query_embeds = self.query_embed.weight[:n_queries]
        attn_mask = self.group_mask(self.num_queries_one2one, n_queries, srcs[0].device)
        hs, init_ref, inter_refs, enc_logits, enc_boxes, enc_deltas, proposals, max_shape = self.transformer(
            srcs, masks, pos, query_embeds, attn_mask, num_proposals=n_queries)
        classes, boxes, olds, deltas = [], [], [], []
        for lvl in range(hs.shape[0]):
            reference = init_ref if lvl == 0 else inter_refs[lvl - 1]
            classes.append(self.class_embed[lvl](hs[lvl]))
            delta = self.bbox_embed[lvl](hs[lvl])
            if self.reparam:
                boxes.append(xyxy_to_cxcywh(delta2bbox(reference, delta, max_shape)))
                olds.append(reference)
                deltas.append(delta)
            else:
                logit = inverse_sigmoid(reference)
                if reference.shape[-1] == 4:
                    delta = delta + logit
                else:
                    delta = torch.cat([delta[..., :2] + logit, delta[..., 2:]], -1)
                boxes.append(delta.sigmoid())
        return self._outputs(classes, boxes, olds, deltas, enc_logits, enc_boxes, enc_deltas, proposals)

    def _outputs(self, classes: list[Tensor], boxes: list[Tensor], olds: list[Tensor], deltas: list[Tensor],
                 enc_logits: Tensor | None, enc_boxes: Tensor | None, enc_deltas: Tensor | None,
                 proposals: Tensor | None) -> dict[str, Any]:
        k = self.num_queries_one2one

        def layer(i: int, part: slice) -> dict[str, Tensor]:
            out = {"pred_logits": classes[i][:, part], "pred_boxes": boxes[i][:, part]}
            if self.reparam:
                out.update(pred_boxes_old=olds[i][:, part], pred_deltas=deltas[i][:, part])
            return out

        one, many = slice(0, k), slice(k, None)
        out: dict[str, Any] = dict(layer(-1, one))
        last_many = layer(-1, many)
        out.update({f"{name}_one2many": value for name, value in last_many.items()})
        if self.aux_loss:
            out["aux_outputs"] = [layer(i, one) for i in range(len(classes) - 1)]
            out["aux_outputs_one2many"] = [layer(i, many) for i in range(len(classes) - 1)]
        if self.two_stage:
            assert enc_logits is not None and enc_boxes is not None
            if self.reparam:
                out["enc_outputs"] = {"pred_logits": enc_logits, "pred_boxes": enc_boxes, "pred_boxes_old": proposals,
                                      "pred_deltas": enc_deltas}
            else:
                out["enc_outputs"] = {"pred_logits": enc_logits, "pred_boxes": enc_boxes.sigmoid()}
        return out


@torch.no_grad()
def postprocess(outputs: dict[str, Tensor], target_sizes: Tensor, topk: int = 100, reparam: bool = False,
                original_target_sizes: Tensor | None = None) -> list[dict[str, Tensor]]:
    """Per image the ``topk`` (query, class) pairs by sigmoid score: ``scores``, ``labels`` and XYXY ``boxes`` in
    absolute pixels of ``target_sizes`` ``[B, 2]`` (H, W) - with ``reparam`` the pixel boxes clipped to the image
    and rescaled by ``original_target_sizes / target_sizes``; otherwise the normalised boxes scaled by the size."""
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    if len(logits) != len(target_sizes) or target_sizes.shape[1] != 2:
        raise ValueError(f"target_sizes must be [batch={len(logits)}, 2] (H, W), got {tuple(target_sizes.shape)}")
    num_classes = logits.shape[2]
    scores, index = torch.topk(logits.sigmoid().flatten(1), topk, dim=1)
    query, labels = index // num_classes, index % num_classes
    picked = torch.gather(cxcywh_to_xyxy(boxes), 1, query[..., None].expand(-1, -1, 4))
    height, width = target_sizes.unbind(1)
    if reparam:
        original = target_sizes if original_target_sizes is None else original_target_sizes
        h, w = height[:, None, None].to(picked.dtype), width[:, None, None].to(picked.dtype)
        x = torch.minimum(picked[..., 0::2].clamp(min=0), w)
        y = torch.minimum(picked[..., 1::2].clamp(min=0), h)
        picked = torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)
        scale_h, scale_w = (original / target_sizes).unbind(1)
        scale = torch.stack([scale_w, scale_h, scale_w, scale_h], 1)
    else:
        scale = torch.stack([width, height, width, height], 1)
    picked = picked * scale[:, None, :]
    return [{"scores": s, "labels": lab, "boxes": b} for s, lab, b in zip(scores, labels, picked)]


#: official ``DetectionHeadConfig`` defaults (``position_embedding`` as a string: "sine" / "sine_unnorm")
HEAD_CONFIG_DEFAULTS: dict[str, Any] = dict(
    num_classes=91, with_box_refine=True, two_stage=True, mixed_selection=True, look_forward_twice=True,
    k_one2many=6, lambda_one2many=1.0, num_queries_one2one=300, num_queries_one2many=1500, reparam=True, topk=100,
    position_embedding="sine", num_feature_levels=1, dec_layers=6, dim_feedforward=2048, hidden_dim=256,
    dropout=0.0, nheads=8, norm_type="pre_norm", aux_loss=True, proposal_feature_levels=4, proposal_min_size=50,
    decoder_type="global_rpe_decomp", decoder_use_checkpoint=False, decoder_rpe_hidden_dim=512,
    decoder_rpe_type="linear", add_transformer_encoder=True, num_encoder_layers=6, layers_to_use=None,
    blocks_to_train=None, n_windows_sqrt=0, proposal_in_stride=None, proposal_tgt_strides=None,
    backbone_use_layernorm=False)


def head_config(backbone: nn.Module, **cfg: Any) -> dict[str, Any]:
    """The full configuration: ``cfg`` over the official defaults, with the backbone-dependent ones filled in."""
    unknown = sorted(set(cfg) - set(HEAD_CONFIG_DEFAULTS))
    if unknown:
        raise TypeError(f"build_plain_detr: unknown option(s) {unknown}; valid: {sorted(HEAD_CONFIG_DEFAULTS)}")
    out = {**HEAD_CONFIG_DEFAULTS, **cfg}
    if hasattr(out["position_embedding"], "value"):  # the official enum
        out["position_embedding"] = out["position_embedding"].value
    patch = int(backbone.patch_size)
    if out["layers_to_use"] is None:
        n = int(backbone.n_blocks)
        out["layers_to_use"] = [m * n // 4 - 1 for m in range(1, 5)]
    if out["proposal_in_stride"] is None:
        out["proposal_in_stride"] = patch
    if out["proposal_tgt_strides"] is None:
        out["proposal_tgt_strides"] = [int(m * patch) for m in (0.5, 1, 2, 4)]
    if out["decoder_type"] != "global_rpe_decomp":
        raise ValueError(f"decoder_type={out['decoder_type']!r}: only 'global_rpe_decomp' (the release's) is built")
    if out["blocks_to_train"]:
        raise ValueError("blocks_to_train: the backbone is frozen in dinobench's Plain-DETR; leave it None")
    return out


def build_plain_detr(backbone: nn.Module, **cfg: Any) -> PlainDETR:
    """The official Plain-DETR detector around a frozen ``backbone``; keyword names are the fields of the official
    ``DetectionHeadConfig``. ``state_dict()`` keys outside the backbone equal the official ``build_model``'s."""
    c = head_config(backbone, **cfg)
    stack = build_detr_backbone(backbone, layers=c["layers_to_use"], use_layernorm=c["backbone_use_layernorm"],
                                n_windows_sqrt=c["n_windows_sqrt"], hidden_dim=c["hidden_dim"],
                                num_feature_levels=c["num_feature_levels"], position_embedding=c["position_embedding"])
    layer = GlobalDecoderLayer(c["hidden_dim"], c["dim_feedforward"], c["dropout"], c["nheads"], c["norm_type"],
                               c["decoder_rpe_hidden_dim"], c["decoder_rpe_type"], c["proposal_in_stride"], c["reparam"])
    decoder = GlobalDecoder(layer, c["dec_layers"], c["look_forward_twice"], c["decoder_use_checkpoint"],
                            c["hidden_dim"], c["norm_type"], c["reparam"])
    transformer = PlainDetrTransformer(
        decoder, d_model=c["hidden_dim"], nhead=c["nheads"], num_feature_levels=c["num_feature_levels"],
        two_stage=c["two_stage"], two_stage_num_proposals=c["num_queries_one2one"] + c["num_queries_one2many"],
        mixed_selection=c["mixed_selection"], proposal_feature_levels=c["proposal_feature_levels"],
        proposal_in_stride=c["proposal_in_stride"], proposal_tgt_strides=c["proposal_tgt_strides"],
        proposal_min_size=c["proposal_min_size"], add_transformer_encoder=c["add_transformer_encoder"],
        num_encoder_layers=c["num_encoder_layers"], reparam=c["reparam"])
    model = PlainDETR(stack, transformer, num_classes=c["num_classes"], num_feature_levels=c["num_feature_levels"],
                      aux_loss=c["aux_loss"], with_box_refine=c["with_box_refine"], two_stage=c["two_stage"],
                      num_queries_one2one=c["num_queries_one2one"], num_queries_one2many=c["num_queries_one2many"],
                      mixed_selection=c["mixed_selection"], reparam=c["reparam"])
    model.config = c
    return model
