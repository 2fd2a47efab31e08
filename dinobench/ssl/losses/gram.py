"""Gram anchoring loss (DINOv3): keep the student's patch-similarity structure close to a Gram teacher's.

MSE between the Gram matrices (pairwise dot products, cosine if ``apply_norm``) of student and
Gram-teacher patch features, per image (``[B, N, D]``) or over all patches of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GramLoss(nn.Module):
    """``GramLoss(apply_norm, img_level, remove_neg, remove_only_teacher_neg)``; ``forward`` decides img_level."""

    def __init__(self, apply_norm: bool = True, img_level: bool = True, remove_neg: bool = True,
                 remove_only_teacher_neg: bool = False) -> None:
        super().__init__()
        if (remove_neg or remove_only_teacher_neg) and remove_neg == remove_only_teacher_neg:
            raise ValueError("GramLoss: remove_neg and remove_only_teacher_neg are mutually exclusive")
        self.mse_loss = nn.MSELoss()
        self.apply_norm = apply_norm
        self.img_level = img_level  # as in the official, only forward's img_level argument is used
        self.remove_neg = remove_neg
        self.remove_only_teacher_neg = remove_only_teacher_neg

    def _gram(self, feats: Tensor, img_level: bool) -> Tensor:
        """Similarity matrix of the (normalised) features, per image or over the flattened batch."""
        feats = feats if feats.dtype == torch.float64 else feats.float()
        if self.apply_norm:
            feats = F.normalize(feats, dim=-1)
        if not img_level and feats.dim() == 3:
            feats = feats.flatten(0, 1)  # (B, N, D) -> (B * N, D)
        return torch.matmul(feats, feats.transpose(-1, -2))

    def forward(self, output_feats: Tensor, target_feats: Tensor, img_level: bool = True) -> Tensor:
        """Loss between student ``output_feats`` and teacher ``target_feats`` (``[B, N, D]``, or ``[B*N, D]``
        when ``img_level`` is False)."""
        if img_level and (output_feats.dim() != 3 or target_feats.dim() != 3):
            raise ValueError("GramLoss with img_level=True needs (B, N, D) features")
        target_sim = self._gram(target_feats, img_level)
        student_sim = self._gram(output_feats, img_level)
        if self.remove_neg:
            target_sim = target_sim.clamp(min=0.0)
            student_sim = torch.where(student_sim < 0, torch.zeros_like(student_sim), student_sim)
        elif self.remove_only_teacher_neg:
            # The official then zeroes student entries where both are negative, but it tests the
            # already-clamped teacher matrix, so no student entry changes: only the teacher is clamped.
            target_sim = target_sim.clamp(min=0.0)
        return self.mse_loss(student_sim, target_sim)
