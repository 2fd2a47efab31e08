"""torch.distributed glue for the SSL engine: torchrun environment, DDP / FSDP2 wrapping,
metric averaging. Launch with ``torchrun --nproc_per_node N -m dinobench train ...``."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def init_from_env(backend: str | None = None) -> bool:
    """Join the process group torchrun describes (RANK/WORLD_SIZE/MASTER_ADDR); no-op otherwise.

    ``backend``: None picks nccl when CUDA is available (unless ``DINOBENCH_DIST_BACKEND=gloo``),
    else gloo; ``"gloo"`` for work on CPU tensors. True when this call created the group.
    """
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        use_nccl = torch.cuda.is_available() and os.environ.get("DINOBENCH_DIST_BACKEND") != "gloo"
        backend = "nccl" if use_nccl else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def shutdown(synchronize: bool = True) -> None:
    """Tear the default group down; on a clean exit first wait for every rank (gloo aborts when a
    peer leaves early). After an error no barrier: the peers may be gone already."""
    if dist.is_initialized():
        try:
            if synchronize:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def world_size() -> int:
    """Number of ranks (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 without torch.distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def device(choice: str = "auto") -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else CPU."""
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(choice)


def autocast(dev: torch.device, dtype_name: str | None):
    """bf16 (or fp16) autocast on GPU when configured; a no-op context on CPU."""
    if dev.type != "cuda" or not dtype_name:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name])


def to_device(batch: dict[str, Any], dev: torch.device) -> dict[str, Any]:
    """Move the tensors of a collated batch to ``dev``."""
    return {k: (v.to(dev, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def mean_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Average scalar metrics over ranks (what a single process on the global batch would log)."""
    if not dist.is_initialized():
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    values /= dist.get_world_size()
    return dict(zip(keys, values.tolist()))


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any rank (e.g. a SIGTERM seen by one of them)."""
    if not dist.is_initialized():
        return flag
    value = torch.tensor([1 if flag else 0])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def wrap_students(model: nn.Module, parallel: str, dev: torch.device) -> None:
    """Replace ``model.runners`` by DDP (or FSDP2 ``fully_shard``) wrappers when distributed."""
    if not dist.is_initialized():
        return
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [dev.index] if dev.type == "cuda" else None
        model.runners = {name: DistributedDataParallel(s, device_ids=ids) for name, s in model.students.items()}
    elif parallel == "fsdp":
        if dev.type != "cuda":
            raise ValueError("train.parallel='fsdp' (FSDP2) needs CUDA devices; use 'ddp' on CPU")
        from torch.distributed.fsdp import fully_shard

        for student in model.students.values():
            for block in getattr(student.backbone, "blocks", []):
                fully_shard(block)
            fully_shard(student)
        model.runners = dict(model.students)
    else:
        raise ValueError(f"train.parallel must be 'ddp' or 'fsdp', got {parallel!r}")
