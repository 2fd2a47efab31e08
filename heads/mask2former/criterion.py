"""Mask2Former's training criterion (Cheng et al., 2022): Hungarian matching + class / mask / dice losses.

- Targets: one binary mask per class present in the label map (semantic segmentation; ignored pixels belong
  to no mask).
- Matching per image (scipy ``linear_sum_assignment``) on ``cost_class * -p(class) + cost_mask * BCE +
  cost_dice * dice``, the mask costs evaluated at ``num_points`` uniformly random points shared by
  predictions and targets.
- Losses on the matched pairs: cross-entropy over classes (unmatched queries -> "no object", weighted
  ``eos_coef``), and sigmoid BCE + dice on ``num_points`` points chosen by uncertainty: ``oversample_ratio``
  times as many random candidates, the ``importance_sample_ratio`` share with the least confident logits,
  the rest uniform. Mask losses are normalised by the number of target masks (averaged over ranks).
- Deep supervision: the same losses (with fresh matching) on every decoder layer's prediction.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.utils import distributed as ddp
from dinobench.heads.matching import hungarian_assign


def semantic_targets(labels: Tensor, ignore_index: int = 255) -> list[dict[str, Tensor]]:
    """Per image ``{"labels": [T], "masks": [T, H, W] float}``: the classes present and their masks."""
    targets = []
    for label in labels:
        classes = torch.unique(label)
        classes = classes[classes != ignore_index]
        masks = (label[None] == classes[:, None, None]).float()
        targets.append({"labels": classes.long(), "masks": masks})
    return targets


def point_sample(inputs: Tensor, coords: Tensor) -> Tensor:
    """Bilinear values of ``inputs`` ``[N, C, H, W]`` at ``coords`` ``[N, P, 2]`` ((x, y) in [0, 1]): ``[N, C, P]``."""
    return F.grid_sample(inputs, 2.0 * coords[:, :, None] - 1.0, mode="bilinear", align_corners=False)[..., 0]


def uncertain_points(logits: Tensor, num_points: int, oversample_ratio: float,
                     importance_sample_ratio: float) -> Tensor:
    """``[N, num_points, 2]`` points: the most uncertain (smallest ``|logit|``) among ``oversample_ratio``x random
    candidates for the ``importance_sample_ratio`` share, uniform random for the rest. ``logits``: ``[N, 1, H, W]``."""
    n = logits.shape[0]
    candidates = int(num_points * oversample_ratio)
    coords = torch.rand(n, candidates, 2, device=logits.device)
    uncertainty = -point_sample(logits, coords).abs()  # [N, 1, candidates]
    n_uncertain = int(importance_sample_ratio * num_points)
    index = torch.topk(uncertainty[:, 0], k=n_uncertain, dim=1)[1]
    picked = torch.gather(coords, 1, index[..., None].expand(-1, -1, 2))
    if num_points > n_uncertain:
        picked = torch.cat([picked, torch.rand(n, num_points - n_uncertain, 2, device=logits.device)], dim=1)
    return picked


def pairwise_sigmoid_ce(inputs: Tensor, targets: Tensor) -> Tensor:
    """Mean BCE-with-logits of every prediction ``[N, P]`` against every target ``[M, P]``: ``[N, M]``."""
    pos = F.binary_cross_entropy_with_logits(inputs, torch.ones_like(inputs), reduction="none")
    neg = F.binary_cross_entropy_with_logits(inputs, torch.zeros_like(inputs), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / inputs.shape[1]


def pairwise_dice(inputs: Tensor, targets: Tensor) -> Tensor:
    """Dice loss ``1 - (2|X.Y| + 1) / (|X| + |Y| + 1)`` of every sigmoid prediction against every target."""
    probs = inputs.sigmoid()
    numerator = 2 * probs @ targets.T
    denominator = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def sigmoid_ce_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Point-averaged BCE of matched pairs, summed over pairs, divided by ``num_masks``."""
    return F.binary_cross_entropy_with_logits(inputs, targets, reduction="none").mean(1).sum() / num_masks


def dice_loss(inputs: Tensor, targets: Tensor, num_masks: float) -> Tensor:
    """Dice loss of matched pairs, summed over pairs, divided by ``num_masks``."""
    probs = inputs.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to target masks minimising the weighted class + mask + dice cost."""

    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 12544) -> None:
        super().__init__()
        self.cost_class, self.cost_mask, self.cost_dice, self.num_points = cost_class, cost_mask, cost_dice, num_points

    def cost_matrix(self, logits: Tensor, masks: Tensor, target: dict[str, Tensor]) -> Tensor:
        """``[Q, T]`` costs of one image (``logits`` ``[Q, K+1]``, ``masks`` ``[Q, h, w]``)."""
        cost_class = -logits.float().softmax(-1)[:, target["labels"]]
        coords = torch.rand(1, self.num_points, 2, device=masks.device)
        tgt = point_sample(target["masks"][:, None].to(masks), coords.expand(len(target["labels"]), -1, -1))[:, 0]
        out = point_sample(masks[:, None], coords.expand(masks.shape[0], -1, -1))[:, 0]
        with torch.autocast(masks.device.type, enabled=False):
            out, tgt = out.float(), tgt.float()
            return (self.cost_mask * pairwise_sigmoid_ce(out, tgt) + self.cost_class * cost_class
                    + self.cost_dice * pairwise_dice(out, tgt))

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        """Per image ``(query indices, target indices)`` of the optimal assignment."""
        return hungarian_assign(targets, lambda b, target: self.cost_matrix(outputs["pred_logits"][b],
                                                                            outputs["pred_masks"][b], target))


class M2FCriterion(nn.Module):
    """The Mask2Former semantic-segmentation losses (see the module docstring); ``forward`` returns the
    weighted total and the unweighted terms of the final layer."""

    def __init__(self, num_classes: int, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, eos_coef: float = 0.1, num_points: int = 12544,
                 oversample_ratio: float = 3.0, importance_sample_ratio: float = 0.75,
                 deep_supervision: bool = True) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.matcher = HungarianMatcher(class_weight, mask_weight, dice_weight, num_points)
        self.weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight}
        self.eos_coef, self.num_points = eos_coef, num_points
        self.oversample_ratio, self.importance_sample_ratio = oversample_ratio, importance_sample_ratio
        self.deep_supervision = deep_supervision
        empty_weight = torch.ones(self.num_classes + 1)
        empty_weight[-1] = eos_coef
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def loss_labels(self, logits: Tensor, targets: Sequence[dict[str, Tensor]],
                    indices: list[tuple[Tensor, Tensor]]) -> Tensor:
        """Weighted cross-entropy; unmatched queries are "no object" (index ``num_classes``)."""
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device)
        for b, (src, tgt) in enumerate(indices):
            classes[b, src.to(logits.device)] = targets[b]["labels"][tgt.to(targets[b]["labels"].device)].to(logits.device)
        return F.cross_entropy(logits.float().transpose(1, 2), classes, self.empty_weight.to(logits.device))

    def loss_masks(self, masks: Tensor, targets: Sequence[dict[str, Tensor]], indices: list[tuple[Tensor, Tensor]],
                   num_masks: float) -> tuple[Tensor, Tensor]:
        """(BCE, dice) of the matched masks at uncertainty-sampled points."""
        src = torch.cat([masks[b, s.to(masks.device)] for b, (s, _) in enumerate(indices)])[:, None]
        tgt = torch.cat([t["masks"][i.to(t["masks"].device)] for t, (_, i) in zip(targets, indices)])[:, None].to(src)
        if src.shape[0] == 0:
            zero = masks.sum() * 0.0
            return zero, zero
        with torch.no_grad():
            coords = uncertain_points(src.detach().float(), self.num_points, self.oversample_ratio,
                                      self.importance_sample_ratio)
            labels = point_sample(tgt.float(), coords)[:, 0]
        logits = point_sample(src.float(), coords)[:, 0]
        return sigmoid_ce_loss(logits, labels, num_masks), dice_loss(logits, labels, num_masks)

    def layer_losses(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]],
                     num_masks: float) -> dict[str, Tensor]:
        """Match, then the three losses of one decoder layer's prediction."""
        indices = self.matcher(outputs, targets)
        loss_mask, loss_dice = self.loss_masks(outputs["pred_masks"], targets, indices, num_masks)
        return {"loss_ce": self.loss_labels(outputs["pred_logits"], targets, indices),
                "loss_mask": loss_mask, "loss_dice": loss_dice}

    def forward(self, outputs: dict[str, Any], targets: Sequence[dict[str, Tensor]]) -> tuple[Tensor, dict[str, float]]:
        """(weighted total over the final and - with deep supervision - every auxiliary layer, logs)."""
        count = torch.tensor([float(sum(len(t["labels"]) for t in targets))], device=outputs["pred_logits"].device)
        if ddp.world_size() > 1:
            torch.distributed.all_reduce(count)
            count = count / ddp.world_size()
        num_masks = max(float(count.item()), 1.0)
        final = self.layer_losses(outputs, targets, num_masks)
        total = sum(self.weights[k] * v for k, v in final.items())
        if self.deep_supervision:
            for aux in outputs.get("aux_outputs", []):
                total = total + sum(self.weights[k] * v for k, v in self.layer_losses(aux, targets, num_masks).items())
        logs = {k: float(v.detach()) for k, v in final.items()}
        return total, logs

