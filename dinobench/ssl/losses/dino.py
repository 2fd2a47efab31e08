"""DINO loss on CLS prototypes: student/teacher cross-entropy over all crop pairs.

The teacher targets come from Sinkhorn-Knopp (``sinkhorn_knopp_teacher``, what DINOv3 trains with)
or from an EMA-centred softmax (``softmax_center_teacher``). When ``torch.distributed`` is
initialised, the Sinkhorn sums and the centre statistics are all-reduced over the default group.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def _distributed() -> bool:
    """True when a default process group exists (the sums must then cover every rank)."""
    return dist.is_available() and dist.is_initialized()


def _upcast(x: Tensor) -> Tensor:
    """Compute in float32 at least (half precision is upcast, float64 is kept)."""
    return x if x.dtype == torch.float64 else x.float()


def sinkhorn_knopp(teacher_output: Tensor, teacher_temp: float, n_samples: Tensor | int,
                   n_iterations: int = 3) -> Tensor:
    """Balanced soft assignment ``[B, K]`` of samples to prototypes (each row sums to 1).

    ``n_samples`` is the global number of samples (rows over all ranks); per-prototype sums and
    the total mass are all-reduced when distributed, per-sample sums are local.
    """
    q = torch.exp(_upcast(teacher_output) / teacher_temp).t()  # [K, B], the paper's notation
    n_protos = q.shape[0]
    total = q.sum()
    if _distributed():
        dist.all_reduce(total)
    q /= total
    for _ in range(n_iterations):
        row_sums = q.sum(dim=1, keepdim=True)  # mass per prototype, must become 1/K
        if _distributed():
            dist.all_reduce(row_sums)
        q /= row_sums
        q /= n_protos
        q /= q.sum(dim=0, keepdim=True)  # mass per sample, must become 1/B
        q /= n_samples
    q *= n_samples  # each sample's assignment sums to 1
    return q.t()


class CenteredTeacherLoss(nn.Module):
    """Shared EMA centre of DINO and iBOT: ``softmax((t - center) / T)`` teacher targets, with the
    centre updated asynchronously (all-reduced across ranks when distributed)."""

    def __init__(self, center_shape: tuple[int, ...], student_temp: float, center_momentum: float) -> None:
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        # the official fills NaN and relies on init_weights(); zeros make a fresh loss usable
        self.register_buffer("center", torch.zeros(*center_shape))
        self.updated = True
        self.reduce_handle = None
        self.center_count: int | None = None
        self.async_batch_center: Tensor | None = None

    def init_weights(self) -> None:
        """Reset the centre to zero (kept for parity with the official initialisation call)."""
        self.center.zero_()

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_output: Tensor, teacher_temp: float,
                               update_centers: bool = True) -> Tensor:
        """Teacher targets ``softmax((t - center) / T)``; first applies a pending centre update."""
        if update_centers:
            self.apply_center_update()
        return F.softmax((teacher_output - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def _start_center_update(self, batch_sum: Tensor, count: int) -> None:
        """Begin ``center <- m * center + (1 - m) * batch_sum / count`` (summed over ranks)."""
        self.updated = False
        self.center_count = count
        self.async_batch_center = batch_sum
        if _distributed():
            self.reduce_handle = dist.all_reduce(self.async_batch_center, async_op=True)

    @torch.no_grad()
    def apply_center_update(self) -> None:
        """Finish a pending update: ``center = m * center + (1 - m) * global batch mean``."""
        if self.updated:
            return
        world_size = dist.get_world_size() if _distributed() else 1
        if self.reduce_handle is not None:
            self.reduce_handle.wait()
            self.reduce_handle = None
        batch_center = self.async_batch_center / (self.center_count * world_size)
        self.center.mul_(self.center_momentum).add_(batch_center * (1 - self.center_momentum))
        self.updated = True


class DINOLoss(CenteredTeacherLoss):
    """``DINOLoss(out_dim)``: cross-entropy between student softmax and teacher targets on CLS logits."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__((1, out_dim), student_temp, center_momentum)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(self, teacher_output: Tensor, teacher_temp: float, n_iterations: int = 3) -> Tensor:
        """Sinkhorn-Knopp targets for teacher logits ``[B, K]``; assumes equal B on every rank."""
        world_size = dist.get_world_size() if _distributed() else 1
        return sinkhorn_knopp(teacher_output, teacher_temp, teacher_output.shape[0] * world_size, n_iterations)

    def forward(self, student_logits: Tensor, teacher_probs: Tensor, ignore_diagonal: bool = False) -> Tensor:
        """Mean CE over (student crop s, teacher crop t, sample b); ``ignore_diagonal`` drops s == t.

        ``student_logits`` is ``[S, B, K]`` (raw logits), ``teacher_probs`` is ``[T, B, K]``.
        """
        student_crops, batch, _ = student_logits.shape
        teacher_crops = teacher_probs.shape[0]
        dtype = torch.promote_types(_upcast(student_logits).dtype, _upcast(teacher_probs).dtype)
        log_p = F.log_softmax(student_logits.to(dtype) / self.student_temp, dim=-1)
        teacher_probs = teacher_probs.to(dtype)
        if not ignore_diagonal:
            loss = -torch.einsum("sbk,tbk->", log_p, teacher_probs)
            return loss / (batch * student_crops * teacher_crops)
        pair_loss = -torch.einsum("sbk,tbk->st", log_p, teacher_probs)
        n_diag = min(student_crops, teacher_crops)
        pair_loss = torch.diagonal_scatter(pair_loss, pair_loss.new_zeros(n_diag))
        return pair_loss.sum() / (batch * student_crops * teacher_crops - batch * n_diag)

    @torch.no_grad()
    def update_center(self, teacher_output: Tensor) -> None:
        """Start the centre update with this batch (async all-reduce when distributed)."""
        self._start_center_update(torch.sum(teacher_output, dim=0, keepdim=True), len(teacher_output))

    reduce_center_update = update_center  # the official name of the same step
