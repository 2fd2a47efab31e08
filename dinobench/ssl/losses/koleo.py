"""KoLeo regulariser (Kozachenko-Leonenko entropy estimator, Sablayrolles et al. 2018).

``-mean_i log(||x_i - x_nn(i)|| + eps)`` on L2-normalised features: pushes each feature away from
its nearest neighbour so the batch spreads over the sphere. ``KoLeoLossDistributed`` searches
neighbours in the batch gathered from all ranks (with gradient through the gather).
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def _distributed() -> bool:
    """True when a default process group exists."""
    return dist.is_available() and dist.is_initialized()


class KoLeoLoss(nn.Module):
    """KoLeo over one local batch ``[B, D]`` with the single nearest neighbour."""

    def __init__(self) -> None:
        super().__init__()
        self.pdist = nn.PairwiseDistance(2, eps=1e-8)

    @staticmethod
    def pairwise_NNs_inner(x: Tensor) -> Tensor:
        """Index of each row's nearest other row, by largest inner product (unit vectors)."""
        dots = torch.mm(x, x.t())
        dots.fill_diagonal_(-1)  # never pick oneself
        return torch.max(dots, dim=1).indices

    def forward(self, student_output: Tensor, eps: float = 1e-8) -> Tensor:
        """KoLeo loss of features ``[B, D]`` (B >= 2)."""
        with torch.autocast(student_output.device.type, enabled=False):
            x = F.normalize(student_output, eps=eps, p=2, dim=-1)
            with torch.no_grad():
                indices = self.pairwise_NNs_inner(x)
            distances = self.pdist(x, x[indices])
            return -torch.log(distances + eps).mean()


class KoLeoLossDistributed(nn.Module):
    """KoLeo with neighbours searched in a group of ``loss_group_size`` gathered samples (default: all ranks).

    Each rank returns the mean over its own samples; with equal batches and DDP gradient
    averaging this is the KoLeo of the whole group. In a single process it equals ``KoLeoLoss``
    (for ``topk=1``).
    """

    def __init__(self, topk: int = 1, loss_group_size: int | None = None) -> None:
        super().__init__()
        self.pdist = nn.PairwiseDistance(2, eps=1e-8)
        self.topk = topk
        self.loss_group_size = loss_group_size

    def pairwise_NNs_inner(self, x: Tensor, all_x: Tensor, rank: int) -> Tensor:
        """``[local_B, topk]`` indices into ``all_x`` of each local row's nearest others (self excluded)."""
        dots = torch.mm(x, all_x.t())  # local_B x group_B
        local_b = x.shape[0]
        rows = torch.arange(local_b, device=x.device)
        dots[rows, rank * local_b + rows] = -1  # this rank's rows sit at rank * local_B in the group
        return torch.topk(dots, dim=1, k=self.topk).indices

    def forward(self, student_output: Tensor, eps: float = 1e-8) -> Tensor:
        """KoLeo loss of this rank's features ``[local_B, D]`` against its group's gathered features."""
        with torch.autocast(student_output.device.type, enabled=False):
            x = F.normalize(student_output, eps=eps, p=2, dim=-1)
            if _distributed():
                from torch.distributed.nn import all_gather  # differentiable: gradients flow back to each rank

                with warnings.catch_warnings():  # deprecated in recent torch, still the autograd-aware gather
                    warnings.simplefilter("ignore", FutureWarning)
                    all_x = torch.cat(all_gather(x), dim=0)
                world_size, rank = dist.get_world_size(), dist.get_rank()
            else:
                all_x, world_size, rank = x, 1, 0

            local_b, global_b = len(x), len(all_x)
            group_size = self.loss_group_size if self.loss_group_size is not None else global_b
            if group_size % local_b != 0:
                raise ValueError(f"Loss group size {group_size} must be a multiple of local batch size {local_b}.")
            if global_b % group_size != 0:
                raise ValueError(f"Global batch size {global_b} must be divisible by loss group size {group_size}.")
            n_groups = global_b // group_size
            ranks_per_group = world_size // n_groups
            group_x = all_x.view(n_groups, group_size, x.shape[1])[rank // ranks_per_group]

            with torch.no_grad():
                indices = self.pairwise_NNs_inner(x, group_x, rank % ranks_per_group)
            x_rep = x.unsqueeze(1).repeat(1, self.topk, 1).flatten(0, 1)  # (local_B * topk) x D
            distances = self.pdist(x_rep, group_x[indices].flatten(0, 1))
            distances = distances.to(torch.promote_types(distances.dtype, torch.float32))
            return -torch.log(distances + eps).mean()
