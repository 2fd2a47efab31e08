"""Pre-norm transformer block: ``x + ls1(attn(norm1 x))``, then ``x + ls2(ffn(norm2 x))``."""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from dinobench.backbones.layers.attention import SelfAttention
from dinobench.backbones.layers.ffn import make_ffn
from dinobench.backbones.layers.layerscale import LayerScale


def drop_path(x: Tensor, rate: float, training: bool) -> Tensor:
    """Stochastic depth: zero a sample's residual with probability ``rate`` (rescaled)."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class SelfAttentionBlock(nn.Module):
    """One ViT block with optional LayerScale and stochastic depth."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_ratio: float = 4.0,
        ffn_layer: str = "mlp",
        qkv_bias: bool = True,
        proj_bias: bool = True,
        ffn_bias: bool = True,
        mask_k_bias: bool = False,
        layerscale_init: float | None = None,
        drop_path_rate: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        device=None,
        ffn: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = SelfAttention(dim, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
                                  mask_k_bias=mask_k_bias, device=device)
        self.ls1 = LayerScale(dim, layerscale_init, device=device) if layerscale_init else nn.Identity()
        self.norm2 = norm_layer(dim)
        # ``ffn``: a ready FFN module for families whose FFN the shared factory does not build
        self.mlp = ffn if ffn is not None else make_ffn(ffn_layer, dim, ffn_ratio, bias=ffn_bias, device=device)
        self.ls2 = LayerScale(dim, layerscale_init, device=device) if layerscale_init else nn.Identity()
        self.drop_path_rate = drop_path_rate

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:  # noqa: D102
        x = x + drop_path(self.ls1(self.attn(self.norm1(x), rope=rope)), self.drop_path_rate, self.training)
        return x + drop_path(self.ls2(self.mlp(self.norm2(x))), self.drop_path_rate, self.training)


__all__ = ["SelfAttentionBlock", "drop_path"]
