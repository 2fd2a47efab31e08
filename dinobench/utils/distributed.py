"""torch.distributed glue for the training engine: torchrun environment, DDP / FSDP2 wrapping, device
moves of nested batches, metric averaging and gathering, and full (unsharded) model / optimizer state
dicts so that checkpoints and exports look the same whatever ``train.parallel`` is. Launch with
``torchrun --nproc_per_node N -m dinobench train ...`` (or ``... -m dinobench run ...`` for head training)."""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from dinobench.errors import ConfigError


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


def to_device(batch: Any, dev: torch.device | str) -> Any:
    """Move every tensor of a collated batch to ``dev``: recursively through dicts (and other mappings,
    returned as dicts), lists, tuples and named tuples; anything else is returned as it is."""
    if isinstance(batch, torch.Tensor):
        return batch.to(dev, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, dev) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(v, dev) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, dev) for v in batch)
    return batch


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` without torch.distributed); collective."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


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
    """Make the students data-parallel when distributed; call before building the optimizer.

    ``ddp``: ``model.runners`` become ``DistributedDataParallel`` wrappers (parameters unchanged).
    ``fsdp``: FSDP2 ``fully_shard`` replaces every student parameter by a ``Shard(0)`` DTensor; the
    EMA teachers are sharded the same way (as the official DINOv3 does), so each EMA parameter's
    local shard lines up with its student's and the EMA update is local. Works on CPU (gloo) and GPU.
    """
    if not dist.is_initialized():
        return
    if parallel == "ddp":
        ids = [dev.index] if dev.type == "cuda" else None
        model.runners = {name: DistributedDataParallel(s, device_ids=ids) for name, s in model.students.items()}
    elif parallel == "fsdp":
        mesh = init_device_mesh(dev.type, (dist.get_world_size(),))
        for student in model.students.values():
            for block in getattr(student.backbone, "blocks", []):
                fully_shard(block, mesh=mesh)
            fully_shard(student, mesh=mesh)
        for ema in model.emas.values():  # the teacher calls backbone.forward_features and the heads directly
            for block in getattr(ema.backbone, "blocks", []):
                fully_shard(block, mesh=mesh)
            fully_shard(ema.backbone, mesh=mesh)
            register_fsdp_forward_method(ema.backbone, "forward_features")
            fully_shard(ema.dino_head, mesh=mesh)
            fully_shard(ema.ibot_head, mesh=mesh)
        # Student.forward returns slices (views) of its outputs; the loss never modifies them in place
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
        model.runners = dict(model.students)
    else:
        raise ConfigError(f"train.parallel must be 'ddp' or 'fsdp', got {parallel!r}")


def shard_model(model: nn.Module, dev: torch.device) -> None:
    """FSDP2 ``fully_shard`` of ``model.fsdp_units()`` (e.g. transformer blocks; none when the model does not name
    any), then of ``model`` itself; call before building the optimizer. CPU (gloo) and GPU."""
    if not dist.is_initialized():
        return
    mesh = init_device_mesh(dev.type, (dist.get_world_size(),))
    for unit in getattr(model, "fsdp_units", lambda: [])():
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)


def reshard(module: nn.Module) -> None:
    """Free the gathered parameters of every FSDP2 unit in ``module`` (no-op when unsharded).

    FSDP2 keeps a root unit's parameters gathered after its forward until its backward; a teacher
    has no backward, so without this its root parameters would stay full-size plain tensors.
    """
    for sub in module.modules():
        if isinstance(sub, FSDPModule):
            sub.reshard()


def is_sharded(module: nn.Module) -> bool:
    """True when ``module`` holds FSDP2-sharded (DTensor) parameters."""
    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state_dict(module: nn.Module, all_ranks: bool = False) -> dict[str, torch.Tensor]:
    """``module.state_dict()``, with FSDP2-sharded parameters gathered into full CPU tensors.

    Collective when ``module`` is sharded (every rank must call it). Then the values are on rank 0
    only (other ranks get ``{}``) unless ``all_ranks``; unsharded modules return their state dict.
    """
    if not is_sharded(module):
        return module.state_dict()
    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=not all_ranks))


def load_full_state_dict(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Inverse of :func:`full_state_dict` (every rank passes the full state; each keeps its shards)."""
    if not is_sharded(module):
        module.load_state_dict(state)
        return
    set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True))


def optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state; with a sharded ``model`` gathered in full (keyed by parameter name) on rank 0."""
    if not is_sharded(model):
        return optimizer.state_dict()
    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state_dict` (every rank passes the full state).

    Either format loads either way (keyed by position from an unsharded run, by parameter name
    from an FSDP2 run), so a run can resume with another ``train.parallel``.
    """
    by_name = any(isinstance(k, str) for k in state["state"]) or any(
        isinstance(p, str) for g in state["param_groups"] for p in g["params"])
    if not is_sharded(model):
        optimizer.load_state_dict(_rekey(state, model, optimizer, to_names=False) if by_name else state)
        return
    state = state if by_name else _rekey(state, model, optimizer, to_names=True)
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def _rekey(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, to_names: bool) -> dict[str, Any]:
    """Optimizer state keyed by position (``optimizer.state_dict()``) <-> by parameter name (DCP)."""
    names = {id(p): n for n, p in model.named_parameters()}
    order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
    key = (lambda k: order[k]) if to_names else {n: i for i, n in enumerate(order)}.__getitem__
    return {"state": {key(k): v for k, v in state["state"].items()},
            "param_groups": [{**g, "params": [key(p) for p in g["params"]]} for g in state["param_groups"]]}


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """``clip_grad_norm_`` returning the total norm as a float (a DTensor under FSDP2)."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
