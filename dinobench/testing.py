"""Helpers for parity tests against official implementations (used by ``tests/`` and ``scripts/*golden*``).

:func:`deterministic_fill` writes into every parameter and buffer a pseudo-random value that depends only
on its state-dict name and shape, so two implementations with the same key layout get the same weights
without storing them: a golden fixture keeps the keys, the inputs' seed and the official outputs only.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor, nn


def _generator(name: str, salt: str) -> torch.Generator:
    digest = hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


@torch.no_grad()
def deterministic_fill(module: nn.Module, salt: str = "dinobench") -> nn.Module:
    """Fill ``module``'s floating tensors by name: running variances in [0.5, 1.5), norm weights ~ 1 + 0.1 N,
    other 1-D tensors ~ 0.1 N (0.02 for embeddings of tokens), matrices ~ N / sqrt(fan_in)."""
    aliases: dict[int, tuple[str, Tensor]] = {}  # a shared tensor is filled once, by its smallest name
    for name, tensor in [*module.named_parameters(remove_duplicate=False),
                         *module.named_buffers(remove_duplicate=False)]:
        if id(tensor) not in aliases or name < aliases[id(tensor)][0]:
            aliases[id(tensor)] = (name, tensor)
    for name, tensor in aliases.values():
        if not tensor.is_floating_point():
            continue
        gen = _generator(name, salt)
        shape = tuple(tensor.shape)
        if name.endswith("running_var"):
            value = torch.rand(shape, generator=gen) + 0.5
        elif name.endswith("running_mean"):
            value = 0.1 * torch.randn(shape, generator=gen)
        elif len(shape) <= 1:
            value = 0.1 * torch.randn(shape, generator=gen)
            if "norm" in name and name.endswith("weight"):
                value = value + 1.0
        else:
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=gen) / math.sqrt(max(fan_in, 1))
        tensor.copy_(value.to(tensor.dtype))
    return module


def key_shapes(module: nn.Module) -> dict[str, list[int]]:
    """``state_dict`` key -> shape (what a golden fixture records of an official layout)."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}
