"""Feed-forward layers: GELU MLP and SwiGLU (hidden size aligned to a multiple)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Mlp(nn.Module):
    """``fc2(gelu(fc1 x))``."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, device=None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias, device=device)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias, device=device)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.fc2(self.act(self.fc1(x)))


def swiglu_hidden_dim(hidden_dim: int, align_to: int = 8) -> int:
    """DINOv3's SwiGLU width: ``int(hidden * 2/3)`` rounded up to a multiple of ``align_to``."""
    d = int(hidden_dim * 2 / 3)
    return d + (-d % align_to)


class SwiGLUFFN(nn.Module):
    """``w3(silu(w1 x) * w2 x)``."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True, align_to: int = 8, device=None) -> None:
        super().__init__()
        width = swiglu_hidden_dim(hidden_dim, align_to)
        self.w1 = nn.Linear(dim, width, bias=bias, device=device)
        self.w2 = nn.Linear(dim, width, bias=bias, device=device)
        self.w3 = nn.Linear(width, dim, bias=bias, device=device)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


FFN_LAYERS = {"mlp": None, "swiglu": 8, "swiglu32": 32, "swiglu64": 64, "swiglu128": 128}


def make_ffn(kind: str, dim: int, ffn_ratio: float, bias: bool = True, device=None) -> nn.Module:
    """Build the FFN named by the official ``ffn_layer`` argument."""
    if kind not in FFN_LAYERS:
        raise ValueError(f"unknown ffn_layer {kind!r}; expected one of {sorted(FFN_LAYERS)}")
    hidden = int(dim * ffn_ratio)
    if kind == "mlp":
        return Mlp(dim, hidden, bias=bias, device=device)
    return SwiGLUFFN(dim, hidden, bias=bias, align_to=FFN_LAYERS[kind], device=device)
