"""Classification transforms built from a task's ``transform`` config and the backbone's normalisation:
the eval transform (features, cached) and the official train augmentation (linear probe on the fly)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def _interpolation(cfg: dict[str, Any]) -> InterpolationMode:
    name = cfg.get("interpolation", "bicubic")
    if name not in INTERPOLATIONS:
        raise ValueError(f"transform.interpolation must be one of {sorted(INTERPOLATIONS)}, got {name!r}")
    return INTERPOLATIONS[name]


def build_eval_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> Callable:
    """Resize (short side) -> centre crop -> tensor -> normalise (``mean``/``std`` of the backbone).

    ``cfg``: ``resize`` (int), ``crop`` (int), ``interpolation`` (bilinear|bicubic|nearest).
    """
    interpolation = _interpolation(cfg)
    steps: list[Callable] = []
    if cfg.get("resize"):
        steps.append(T.Resize(int(cfg["resize"]), interpolation=interpolation, antialias=True))
    if cfg.get("crop"):
        steps.append(T.CenterCrop(int(cfg["crop"])))
    steps += [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    return T.Compose(steps)


def build_train_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float],
                          scale: Sequence[float] = (0.08, 1.0), hflip_prob: float = 0.5) -> Callable:
    """Official classification train augmentation: RandomResizedCrop(``crop``, ``scale``) -> flip ->
    tensor -> normalise, at the eval crop size (``crop``, else ``resize``) and interpolation."""
    interpolation = _interpolation(cfg)
    size = cfg.get("crop") or cfg.get("resize")
    if not size:
        raise ValueError("train augmentation needs transform.crop (or transform.resize): the crop size")
    return T.Compose([
        T.RandomResizedCrop(int(size), scale=tuple(scale), interpolation=interpolation, antialias=True),
        T.RandomHorizontalFlip(p=float(hflip_prob)),
        T.ToTensor(),
        T.Normalize(mean=list(mean), std=list(std)),
    ])
