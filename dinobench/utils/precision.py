"""The compute precision of feature extraction.

The default is float32, the official recipe: the official evaluations of released (hub) models run without
autocast (``dinov3/eval/setup.py:44``, ``BaseModelContext(autocast_dtype=torch.float)`` for every ``dino_hub``
model: kNN, logreg, linear, NYU depth; the dino.txt notebooks likewise). ``auto`` is the faster named option:
bf16 autocast where bf16 matrix units exist (CUDA; CPUs with AMX or AVX512-BF16, where a bf16 matmul runs at
2-3x the fp32 rate), fp32 elsewhere: on a CPU without them bf16 is emulated (a measured 0.3 GFLOP/s against
~100 fp32) and would make extraction hundreds of times slower. ``--precision`` / ``$DINOBENCH_PRECISION`` choose
one. The resolved name is recorded in every result (``environment.dtype``) and is part of the feature-cache key.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager

from dinobench.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where it is used: `dinobench list` (which reads PRECISION_CHOICES) stays light
    import torch

#: what a user may ask for
PRECISION_CHOICES = ("auto", "float32", "bfloat16")
#: what a run records (and keys its cache on): the resolved precision
FLOAT32, BF16_AUTOCAST = "float32", "bfloat16-autocast"
#: CPU flags (``/proc/cpuinfo``) of native bf16 matrix arithmetic
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
#: environment variable read when no precision is given
PRECISION_ENV = "DINOBENCH_PRECISION"
#: without --precision or the variable: the official evaluations' float32 (dinov3/eval/setup.py:44)
DEFAULT_PRECISION = "float32"


@functools.lru_cache(maxsize=None)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where there is no ``/proc/cpuinfo``)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AMX or AVX512-BF16)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_CPU_FLAGS)


def resolve_precision(requested: str | None, device: str | torch.device) -> str:
    """``float32`` or ``bfloat16-autocast`` for ``requested`` on ``device`` (None: ``$DINOBENCH_PRECISION``, else
    float32, the official recipe; ``auto``: the hardware's choice, bf16 on CUDA and native-bf16 CPUs); an unknown
    name is a ConfigError."""
    choice = requested or os.environ.get(PRECISION_ENV) or DEFAULT_PRECISION
    if choice not in PRECISION_CHOICES and choice != BF16_AUTOCAST:
        source = "--precision" if requested else f"${PRECISION_ENV}"
        raise ConfigError(f"{source}={choice!r}: expected one of {', '.join(PRECISION_CHOICES)}")
    if choice == "auto":
        import torch

        on_cuda = torch.device(device).type == "cuda"
        return BF16_AUTOCAST if on_cuda or cpu_has_native_bf16() else FLOAT32
    return FLOAT32 if choice == FLOAT32 else BF16_AUTOCAST


def autocast_for(precision: str, device: str | torch.device) -> ContextManager:
    """The autocast context of a resolved ``precision`` on ``device`` (a no-op for float32)."""
    if precision == FLOAT32:
        return contextlib.nullcontext()
    if precision != BF16_AUTOCAST:
        raise ConfigError(f"precision {precision!r}: expected {FLOAT32} or {BF16_AUTOCAST}")
    import torch

    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
