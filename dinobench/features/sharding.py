"""torch.distributed helpers of the feature cache (no-ops in a single process)."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist

from dinobench.errors import DinobenchError
from dinobench.utils import distributed as ddp
from dinobench.utils.distributed import all_gather_objects as all_gather  # noqa: F401 - re-exported


def rank_world() -> tuple[int, int]:
    """This process's rank and the number of ranks."""
    return ddp.rank(), ddp.world_size()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if rank_world()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def raise_if_any_failed(error: BaseException | None) -> None:
    """Collective: re-raise this rank's error, or fail every rank when another rank failed."""
    if ddp.any_rank(error is not None) and error is None:
        raise DinobenchError("feature extraction failed on another rank (see its error above)")
    if error is not None:
        raise error
