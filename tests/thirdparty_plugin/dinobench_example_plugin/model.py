"""A parameter-light backbone honouring dinobench's backbone contract."""

import torch
from torch import nn


class PatchPool(nn.Module):
    """Tokens = pixel patches through a linear map; CLS = a linear map of the 8x8-pooled image."""

    def __init__(self, patch_size: int = 4, embed_dim: int = 48):
        super().__init__()
        self.patch_size, self.embed_dim, self.n_storage_tokens = patch_size, embed_dim, 0
        self.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.global_proj = nn.Linear(3 * 8 * 8, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)

    def forward_features(self, x):
        patches = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.global_proj(nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))
        tokens = torch.cat([cls[:, None], patches], dim=1)
        normed = self.norm(tokens)
        return {"x_norm_clstoken": normed[:, 0], "x_storage_tokens": normed[:, 1:1],
                "x_norm_patchtokens": normed[:, 1:], "x_prenorm": tokens}

    def get_intermediate_layers(self, x, n=1, reshape=False, return_class_token=False,
                                return_extra_tokens=False, norm=True):
        if n not in (1, [0], (0,), [-1], (-1,)):
            raise ValueError("PatchPool has a single layer: use n=1")
        out = self.forward_features(x)
        prenorm = out["x_prenorm"]
        tokens = self.norm(prenorm) if norm else prenorm
        patches, cls = tokens[:, 1:], tokens[:, 0]
        if reshape:
            h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
            patches = patches.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
        parts = [patches] + ([cls] if return_class_token else []) + ([tokens[:, 1:1]] if return_extra_tokens else [])
        return (parts[0],) if len(parts) == 1 else (tuple(parts),)
