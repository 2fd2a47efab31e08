"""DINO / iBOT projection head: MLP -> L2-normalised bottleneck -> prototype layer (``last_layer``).

Attribute names (``mlp``, ``last_layer``) follow the official ``DINOHead`` so state dicts match and
the trainer can freeze ``last_layer`` during the first epoch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.init import trunc_normal_


def _build_mlp(nlayers: int, in_dim: int, bottleneck_dim: int, hidden_dim: int, use_bn: bool,
               bias: bool) -> nn.Module:
    """``nlayers`` Linear layers with (BatchNorm +) GELU between them, ending at ``bottleneck_dim``."""
    if nlayers == 1:
        return nn.Linear(in_dim, bottleneck_dim, bias=bias)
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (nlayers - 1)
    for d_in, d_out in zip(dims[:-1], dims[1:]):
        layers.append(nn.Linear(d_in, d_out, bias=bias))
        if use_bn:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.GELU())
    layers.append(nn.Linear(hidden_dim, bottleneck_dim, bias=bias))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """Projection head used for both the DINO (CLS) and iBOT (patch) objectives."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256,
                 nlayers: int = 3, use_bn: bool = False, mlp_bias: bool = True,
                 norm_last_layer: bool = False) -> None:
        super().__init__()
        # DINOv1/v2-style cosine prototypes (unit-norm rows of ``last_layer``); DINOv3 default: off
        self.norm_last_layer = norm_last_layer
        self.mlp = _build_mlp(max(nlayers, 1), in_dim, bottleneck_dim, hidden_dim, use_bn, mlp_bias)
        self.last_layer = nn.Linear(bottleneck_dim, out_dim, bias=False)

    def init_weights(self) -> None:
        """Truncated-normal (std 0.02) Linear weights and zero biases, as in the official head."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, no_last_layer: bool = False, only_last_layer: bool = False) -> Tensor:
        """Prototype logits; ``no_last_layer`` stops at the unit-norm bottleneck, ``only_last_layer`` skips the MLP."""
        if not only_last_layer:
            x = self.mlp(x)
            eps = 1e-6 if x.dtype == torch.float16 else 1e-12
            x = nn.functional.normalize(x, dim=-1, p=2, eps=eps)
        if not no_last_layer:
            weight = self.last_layer.weight
            x = nn.functional.linear(x, nn.functional.normalize(weight, dim=1) if self.norm_last_layer else weight)
        return x
