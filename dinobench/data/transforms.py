"""Classification transforms built from a task's ``transform`` config and the backbone's normalisation:
the eval transform (features, cached) and the official train augmentation (linear probe on the fly)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from dinobench.errors import ConfigError

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


def _interpolation(cfg: dict[str, Any]) -> InterpolationMode:
    name = cfg.get("interpolation", "bicubic")
    if not isinstance(name, str) or name not in INTERPOLATIONS:
        raise ConfigError(f"transform.interpolation: {name!r} is not one of {', '.join(sorted(INTERPOLATIONS))}")
    return INTERPOLATIONS[name]


def _size(cfg: dict[str, Any], key: str) -> int | None:
    value = cfg.get(key)
    if value is None or (isinstance(value, (bool, int, float, str)) and not value):
        return None  # absent, 0, False or "": no such step (as before)
    try:
        size = int(value)
        valid = not isinstance(value, bool) and size == float(value) and size >= 1
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(f"transform.{key}: {value!r} is not a positive whole number of pixels")
    return size


def build_eval_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float]) -> Callable:
    """Resize (short side) -> centre crop -> tensor -> normalise (``mean``/``std`` of the backbone).

    ``cfg``: ``resize`` (int), ``crop`` (int), ``interpolation`` (bilinear|bicubic|nearest).
    """
    interpolation = _interpolation(cfg)
    resize, crop = _size(cfg, "resize"), _size(cfg, "crop")
    steps: list[Callable] = []
    if resize:
        steps.append(T.Resize(resize, interpolation=interpolation, antialias=True))
    if crop:
        steps.append(T.CenterCrop(crop))
    steps += [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    return T.Compose(steps)


def build_train_transform(cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float],
                          scale: Sequence[float] = (0.08, 1.0), hflip_prob: float = 0.5) -> Callable:
    """Official classification train augmentation: RandomResizedCrop(``crop``, ``scale``) -> flip ->
    tensor -> normalise, at the eval crop size (``crop``, else ``resize``) and interpolation."""
    interpolation = _interpolation(cfg)
    size = _size(cfg, "crop") or _size(cfg, "resize")
    if not size:
        raise ConfigError("transform.crop: the train augmentation needs the crop size (transform.crop or "
                          "transform.resize, in pixels)")
    return T.Compose([
        T.RandomResizedCrop(size, scale=tuple(scale), interpolation=interpolation, antialias=True),
        T.RandomHorizontalFlip(p=float(hflip_prob)),
        T.ToTensor(),
        T.Normalize(mean=list(mean), std=list(std)),
    ])
