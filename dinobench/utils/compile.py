"""Opt-in ``torch.compile`` of a backbone's feature entry points, falling back to eager with one warning.

``features.compile=true`` compiles ``forward_features`` and ``get_intermediate_layers`` (what every feature
kind calls) in place. Compilation is lazy: it happens, and may fail (no C++ compiler, an unsupported op, a
backend bug), at the first call. A failure logs one warning naming the method and the error and that method
runs eagerly from then on, so a run never dies of an optimisation.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

logger = logging.getLogger("dinobench")

#: the backbone methods feature kinds call
COMPILED_METHODS = ("forward_features", "get_intermediate_layers")


class CompiledOrEager:
    """Calls the compiled ``fn``; on its first failure warns once and calls the eager ``fn`` from then on."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.eager, self.name = fn, name
        self.compiled: Callable[..., Any] | None = torch.compile(fn)
        self.failed = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compile/backend error: run eagerly instead
                logger.warning("dinobench: warning: features.compile: torch.compile of %s failed (%s: %s); "
                               "running it eagerly", self.name, type(exc).__name__, str(exc).splitlines()[0][:200])
                self.compiled, self.failed = None, True
        return self.eager(*args, **kwargs)


def compile_backbone(model: nn.Module) -> nn.Module:
    """``model`` with its feature methods wrapped in :class:`CompiledOrEager` (idempotent)."""
    for name in COMPILED_METHODS:
        method = getattr(model, name, None)
        if method is not None and not isinstance(method, CompiledOrEager):
            setattr(model, name, CompiledOrEager(method, f"{type(model).__name__}.{name}"))
    return model
