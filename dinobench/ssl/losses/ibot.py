"""iBOT loss on masked patch tokens: student/teacher cross-entropy, averaged per image then over images.

``forward`` takes dense ``[B, N, K]`` tokens with a mask; ``forward_masked`` (what training uses)
takes only the masked tokens, flattened over the batch, each weighted by 1 / (masked patches of
its image). Teacher targets come from Sinkhorn-Knopp over all masked tokens (of all ranks) or
from an EMA-centred softmax.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from dinobench.ssl.losses.dino import CenteredTeacherLoss, _distributed, _upcast, sinkhorn_knopp


def _cross_entropy_terms(teacher: Tensor, student: Tensor, temp: float) -> Tensor:
    """Per-token ``sum_k t_k * log_softmax(s / temp)_k`` (the negative cross-entropy)."""
    dtype = torch.promote_types(_upcast(teacher).dtype, _upcast(student).dtype)
    return torch.sum(teacher.to(dtype) * F.log_softmax(student.to(dtype) / temp, dim=-1), dim=-1)


class IBOTPatchLoss(CenteredTeacherLoss):
    """``IBOTPatchLoss(patch_out_dim)``: masked-patch cross-entropy with iBOT-head prototypes."""

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__((1, 1, patch_out_dim), student_temp, center_momentum)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(self, teacher_output: Tensor, teacher_temp: float,
                               n_masked_patches_tensor: Tensor | int, n_iterations: int = 3) -> Tensor:
        """Sinkhorn-Knopp targets for the masked teacher tokens ``[M, K]``.

        ``n_masked_patches_tensor`` is this rank's count of masked patches; it is summed over ranks
        (on a copy, the caller's tensor is left alone) to give the global number of samples.
        """
        n_samples = torch.as_tensor(n_masked_patches_tensor, device=teacher_output.device).clone()
        if _distributed():
            dist.all_reduce(n_samples)
        return sinkhorn_knopp(teacher_output, teacher_temp, n_samples, n_iterations)

    def forward(self, student_patch_tokens: Tensor, teacher_patch_tokens: Tensor,
                student_masks_flat: Tensor) -> Tensor:
        """Dense variant: tokens ``[B, N, K]``, mask ``[B, N]``; per-image mean over masked tokens."""
        loss = _cross_entropy_terms(teacher_patch_tokens, student_patch_tokens, self.student_temp)
        masks = student_masks_flat.to(loss.dtype)
        loss = torch.sum(loss * masks, dim=-1) / masks.sum(dim=-1).clamp(min=1.0)
        return -loss.mean()

    def forward_masked(self, student_patch_tokens_masked: Tensor, teacher_patch_tokens_masked: Tensor,
                       student_masks_flat: Tensor, n_masked_patches: int | None = None,
                       masks_weight: Tensor | None = None) -> Tensor:
        """Masked-token variant: ``-sum_i w_i * sum_k t_ik log_softmax(s_i / T)_k / B`` over masked tokens i.

        ``w_i`` defaults to 1 / (masked patches of token i's image); ``n_masked_patches`` drops
        padding rows beyond the real masked tokens; B is the number of images in the mask.
        """
        loss = _cross_entropy_terms(teacher_patch_tokens_masked, student_patch_tokens_masked, self.student_temp)
        if masks_weight is None:
            masks = student_masks_flat.bool()
            per_image = 1 / masks.sum(-1).clamp(min=1).to(loss.dtype)
            masks_weight = per_image.unsqueeze(-1).expand_as(masks)[masks]
        if n_masked_patches is not None:
            loss = loss[:n_masked_patches]
        loss = loss * masks_weight
        return -loss.sum() / student_masks_flat.shape[0]

    @torch.no_grad()
    def update_center(self, teacher_patch_tokens: Tensor) -> None:
        """Start the centre update with the per-image token means of this batch."""
        self._start_center_update(torch.sum(teacher_patch_tokens.mean(1), dim=0, keepdim=True),
                                  len(teacher_patch_tokens))

    reduce_center_update = update_center  # the official name of the same step
