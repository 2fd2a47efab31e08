"""Helpers for parity tests against official implementations (used by ``tests/`` and ``scripts/*golden*``).

:func:`deterministic_fill` writes into every parameter and buffer a pseudo-random value that depends only
on its state-dict name and shape, so two implementations with the same key layout get the same weights
without storing them: a golden fixture keeps the keys, the inputs' seed and the official outputs only.

Weights and inputs are drawn with :func:`portable_noise`, never ``torch.randn``: torch's float32 normal kernel
is vectorised per CPU (Box-Muller with AVX2 / AVX-512 / scalar ``log`` and ``cos``), so ``randn`` with the same
seed gives values that differ in the last bits between CPUs (``ATEN_CPU_CAPABILITY=default`` against ``avx2``:
364 of 1000 values, by up to 1.1e-6) - a golden fixture made on one CPU was then compared with outputs of
slightly different weights and images on another.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import Tensor, nn


def _generator(name: str, salt: str) -> torch.Generator:
    digest = hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def portable_noise(shape: tuple[int, ...] | list[int], generator: torch.Generator,
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Zero-mean, unit-variance noise of ``shape`` that is bit for bit the same on every CPU: uniform on
    [-sqrt(3), sqrt(3)), from ``torch.rand`` in float64 (integers times 2**-53, exact) shifted and scaled with
    correctly rounded IEEE operations, then cast to ``dtype``."""
    uniform = torch.rand(tuple(shape), generator=generator, dtype=torch.float64)
    return ((uniform - 0.5) * math.sqrt(12.0)).to(dtype)


@torch.no_grad()
def deterministic_fill(module: nn.Module, salt: str = "dinobench") -> nn.Module:
    """Fill ``module``'s floating tensors by name: running variances in [0.5, 1.5), norm weights ~ 1 + 0.1 Z,
    other 1-D tensors ~ 0.1 Z, matrices ~ Z / sqrt(fan_in), with Z :func:`portable_noise` (the same on every
    CPU)."""
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
            value = 0.1 * portable_noise(shape, gen)
        elif len(shape) <= 1:
            value = 0.1 * portable_noise(shape, gen)
            if "norm" in name and name.endswith("weight"):
                value = value + 1.0
        else:
            fan_in = math.prod(shape[1:])
            value = portable_noise(shape, gen) / math.sqrt(max(fan_in, 1))
        tensor.copy_(value.to(tensor.dtype))
    return module


def key_shapes(module: nn.Module) -> dict[str, list[int]]:
    """``state_dict`` key -> shape (what a golden fixture records of an official layout)."""
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def assert_close_to_scale(got: Tensor, expected: Tensor, rtol_of_max: float, what: str = "output") -> None:
    """Assert ``|got - expected| <= rtol_of_max * max|expected|`` everywhere (same shape and dtype).

    Golden outputs span magnitudes (box coordinates in pixels beside logits near 0): rounding differences between
    CPUs scale with the largest magnitude of a computation, not with each element, so the tolerance does too.
    """
    assert got.shape == expected.shape and got.dtype == expected.dtype, (
        f"{what}: {tuple(got.shape)} {got.dtype} against {tuple(expected.shape)} {expected.dtype}")
    if expected.numel() == 0:
        return
    scale = max(float(expected.abs().max()), 1e-12)
    diff = float((got - expected).abs().max())
    assert diff <= rtol_of_max * scale, (
        f"{what}: max abs diff {diff:.3g} = {diff / scale:.3g} of the largest magnitude {scale:.3g} "
        f"(tolerance {rtol_of_max:g} of it)")


class TinyMaskPredictor(nn.Module):
    """A fixed tiny stand-in for a Mask2Former segmentor, with the official ``predict(images, rescale_to)``
    contract: ``pred_logits`` ``[B, Q, K+1]`` from learned queries plus the input's pooled features (so a window's
    content matters), ``pred_masks`` ``[B, Q, *rescale_to]`` from features at half resolution resized bilinearly.
    Golden checks of inference code (windows, scales, flips, how views are combined) run it on both sides; its
    weights come from :func:`deterministic_fill` of ``salt``."""

    def __init__(self, num_classes: int = 3, num_queries: int = 4, dim: int = 8,
                 salt: str = "tiny-mask-predictor") -> None:
        super().__init__()
        self.features = nn.Conv2d(3, dim, 3, padding=1)
        self.queries = nn.Parameter(torch.zeros(num_queries, dim))
        self.mask_embed = nn.Linear(dim, dim)
        self.class_embed = nn.Linear(dim, num_classes + 1)
        deterministic_fill(self, salt)

    @torch.no_grad()
    def predict(self, images: Tensor, rescale_to: tuple[int, int] | list[int] = (512, 512)) -> dict[str, Tensor]:
        """The official output dict (float32) of ``images`` ``[B, 3, H, W]``."""
        features = torch.tanh(self.features(images.float()))
        queries = self.queries[None] + features.mean((-2, -1))[:, None]
        masks = torch.einsum("bqd,bdhw->bqhw", self.mask_embed(queries),
                             nn.functional.avg_pool2d(features, 2, ceil_mode=True))
        masks = nn.functional.interpolate(3 * masks, size=tuple(rescale_to), mode="bilinear", align_corners=False)
        return {"pred_logits": 3 * self.class_embed(queries), "pred_masks": masks}
