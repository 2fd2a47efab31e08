"""Plain-DETR's training criterion (the official release ships none): hybrid matching.

One-to-one: Hungarian matching (scipy) of the one-to-one queries on a focal class cost + L1 box cost (on
the deltas relative to each query's reference box with ``reparam``, else on normalised boxes) + GIoU cost;
losses: sigmoid focal classification (alpha 0.25, gamma 2) over every query, L1 and GIoU on matched boxes,
normalised by the number of target boxes (averaged over DDP ranks). Deep supervision: the same on every
decoder layer and - with class-agnostic targets - on the two-stage proposals. One-to-many: the one-to-many
queries matched the same way against the targets repeated ``k_one2many`` times, weighted ``lambda_one2many``.
Targets: ``{"labels": [T] long, "boxes": [T, 4] (cx, cy, w, h)}`` - absolute pixels with ``reparam``,
normalised by the unpadded image size otherwise.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

from dinobench.heads.matching import hungarian_assign
from dinobench.heads.plain_detr.boxes import bbox2delta, cxcywh_to_xyxy
from dinobench.utils import distributed as ddp

Indices = list[tuple[Tensor, Tensor]]


def focal_class_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """``[N, T]`` focal cost of predicting each target's class: positive minus negative focal term."""
    prob = logits.sigmoid()
    neg = (1 - alpha) * prob ** gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    return pos[:, labels] - neg[:, labels]


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to target boxes minimising the weighted class + L1 + GIoU cost."""

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 reparam: bool = False, focal_alpha: float = 0.25) -> None:
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.reparam, self.focal_alpha = reparam, focal_alpha

    def cost_matrix(self, outputs: dict[str, Tensor], b: int, target: dict[str, Tensor]) -> Tensor:
        """``[Q, T]`` costs of image ``b``."""
        boxes, tgt = outputs["pred_boxes"][b].float(), target["boxes"].float()
        cost_class = focal_class_cost(outputs["pred_logits"][b].float(), target["labels"], self.focal_alpha)
        if self.reparam:
            deltas = outputs["pred_deltas"][b].float()
            tgt_deltas = bbox2delta(outputs["pred_boxes_old"][b].float(), tgt, pairwise=True)  # [Q, T, 4]
            cost_bbox = (deltas[:, None] - tgt_deltas).abs().sum(-1)
        else:
            cost_bbox = torch.cdist(boxes, tgt, p=1)
        cost_giou = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(tgt))
        return self.cost_bbox * cost_bbox + self.cost_class * cost_class + self.cost_giou * cost_giou

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]]) -> Indices:
        """Per image ``(query indices, target indices)`` of the optimal assignment."""
        return hungarian_assign(targets, lambda b, target: self.cost_matrix(outputs, b, target))


def _matched(outputs: dict[str, Tensor], key: str, indices: Indices) -> Tensor:
    return torch.cat([outputs[key][b, src.to(outputs[key].device)] for b, (src, _) in enumerate(indices)])


class PlainDetrCriterion(nn.Module):
    """Hybrid-matching losses; ``forward`` returns the weighted total and the unweighted final-layer terms."""

    def __init__(self, num_classes: int, *, cls_weight: float = 2.0, bbox_weight: float = 5.0,
                 giou_weight: float = 2.0, focal_alpha: float = 0.25, reparam: bool = True, k_one2many: int = 6,
                 lambda_one2many: float = 1.0) -> None:
        super().__init__()
        self.num_classes, self.focal_alpha, self.reparam = int(num_classes), focal_alpha, reparam
        self.matcher = HungarianMatcher(cls_weight, bbox_weight, giou_weight, reparam, focal_alpha)
        self.weights = {"loss_ce": cls_weight, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
        self.k_one2many, self.lambda_one2many = k_one2many, lambda_one2many

    def loss_labels(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]], indices: Indices,
                    num_boxes: float) -> Tensor:
        """Sigmoid focal loss against one-hot classes (unmatched queries: all zeros), summed over classes,
        averaged over queries, times the number of queries, over ``num_boxes`` (Deformable DETR's scaling)."""
        logits = outputs["pred_logits"]
        onehot = torch.zeros_like(logits, dtype=torch.float32)
        for b, (src, tgt) in enumerate(indices):
            onehot[b, src.to(logits.device), targets[b]["labels"][tgt].to(logits.device)] = 1.0
        loss = sigmoid_focal_loss(logits.float(), onehot, alpha=self.focal_alpha, gamma=2.0, reduction="none")
        return loss.mean(1).sum() / num_boxes * logits.shape[1]

    def loss_boxes(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]], indices: Indices,
                   num_boxes: float) -> tuple[Tensor, Tensor]:
        """(L1 - on deltas with ``reparam`` - , GIoU) of the matched boxes, summed over ``num_boxes``."""
        src = _matched(outputs, "pred_boxes", indices).float()
        tgt = torch.cat([t["boxes"][j] for t, (_, j) in zip(targets, indices)]).to(src)
        if self.reparam:
            deltas = _matched(outputs, "pred_deltas", indices).float()
            old = _matched(outputs, "pred_boxes_old", indices).float()
            l1 = F.l1_loss(deltas, bbox2delta(old, tgt), reduction="none")
        else:
            l1 = F.l1_loss(src, tgt, reduction="none")
        giou = 1 - torch.diag(generalized_box_iou(cxcywh_to_xyxy(src), cxcywh_to_xyxy(tgt)))
        return l1.sum() / num_boxes, giou.sum() / num_boxes

    def layer_losses(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]],
                     num_boxes: float) -> dict[str, Tensor]:
        """Match, then the three losses of one prediction set."""
        indices = self.matcher(outputs, targets)
        loss_bbox, loss_giou = self.loss_boxes(outputs, targets, indices, num_boxes)
        return {"loss_ce": self.loss_labels(outputs, targets, indices, num_boxes), "loss_bbox": loss_bbox,
                "loss_giou": loss_giou}

    def group_losses(self, outputs: dict[str, Any], targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Final layer, every auxiliary layer (``_<i>``) and the proposals (``_enc``, class-agnostic)."""
        count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=outputs["pred_logits"].device)
        if ddp.world_size() > 1:
            torch.distributed.all_reduce(count)
            count = count / ddp.world_size()
        num_boxes = max(float(count.item()), 1.0)
        losses = dict(self.layer_losses(outputs, targets, num_boxes))
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self.layer_losses(aux, targets, num_boxes).items()})
        if "enc_outputs" in outputs:
            binary = [{**t, "labels": torch.zeros_like(t["labels"])} for t in targets]
            losses.update({f"{k}_enc": v for k, v in self.layer_losses(outputs["enc_outputs"], binary,
                                                                        num_boxes).items()})
        return losses

    def forward(self, outputs: dict[str, Any], targets: Sequence[dict[str, Tensor]]) -> tuple[Tensor, dict[str, float]]:
        """(weighted total of the one-to-one and - with one-to-many queries - the one-to-many losses, logs)."""
        losses = self.group_losses(outputs, targets)
        many = outputs.get("pred_logits_one2many")
        if many is not None and many.shape[1] > 0 and self.k_one2many > 0:
            group = {k[: -len("_one2many")]: v for k, v in outputs.items() if k.endswith("_one2many")}
            repeated = [{"labels": t["labels"].repeat(self.k_one2many),
                         "boxes": t["boxes"].repeat(self.k_one2many, 1)} for t in targets]
            losses.update({f"{k}_one2many": v * self.lambda_one2many
                           for k, v in self.group_losses(group, repeated).items()})
        total = sum(self.weights[k.split("_")[0] + "_" + k.split("_")[1]] * v for k, v in losses.items())
        logs = {k: float(v.detach()) for k, v in losses.items() if k in self.weights}
        logs.update({f"{k}_one2many": float(losses[f"{k}_one2many"].detach()) for k in self.weights
                     if f"{k}_one2many" in losses})
        return total, logs
