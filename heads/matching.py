"""One-to-one query/target assignment (scipy's Hungarian ``linear_sum_assignment``), shared by the set-prediction
criteria: each supplies its cost matrix."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def hungarian_assign(targets: Sequence[dict[str, Tensor]],
                     cost_of: Callable[[int, dict[str, Tensor]], Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Per image ``b`` the ``(query indices, target indices)`` minimising ``cost_of(b, target)`` (``[Q, T]``);
    empty index tensors for an image without targets."""
    indices = []
    for b, target in enumerate(targets):
        if len(target["labels"]) == 0:
            empty = torch.zeros(0, dtype=torch.long)
            indices.append((empty, empty))
            continue
        rows, cols = linear_sum_assignment(cost_of(b, target).cpu().numpy())
        indices.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)))
    return indices
