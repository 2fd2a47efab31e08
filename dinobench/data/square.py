"""Datasets of whole images resized to one square size (``transform.size``): keypoint pairs, object discovery.

:class:`SquareImages` holds the image files; its eval transform (set by the runner from the task's
``transform.size``) resizes every image to ``size x size`` (bicubic) so that all feature maps share one grid and
are cached together; predictions are mapped back to the original pixels by the protocol (``sizes``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dinobench.data.base import load_rgb
from dinobench.data.joint import ToFloatImage, normalize
from dinobench.data.transforms import required_pixels


class SquareTransform:
    """Resize to ``size x size`` (bicubic, antialiased), to a float image, normalise (a v2 pipeline of the joint
    system, :mod:`dinobench.data.joint`)."""

    def __init__(self, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.size = int(size)
        self.pipeline = v2.Compose([v2.Resize([self.size, self.size], interpolation=v2.InterpolationMode.BICUBIC,
                                              antialias=True), ToFloatImage(), normalize(mean, std)])

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.pipeline(image).as_subclass(torch.Tensor)


class SquareImages(Dataset):
    """Image files with their original ``sizes`` ``(width, height)``; items ``(image, index)``."""

    def __init__(self, name: str, split: str, images: list[str], sizes: list[tuple[int, int]],
                 fingerprint: str) -> None:
        self.name, self.split, self.images, self.sizes, self.fingerprint = name, split, images, sizes, fingerprint
        self.transform: Any = None

    def eval_transform(self, transform_cfg: dict[str, Any], mean: Sequence[float], std: Sequence[float],
                       backbone: Any) -> SquareTransform:
        """Square resize to ``transform.size``."""
        return SquareTransform(required_pixels(transform_cfg, "size", "the square image side", 448), mean, std)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = load_rgb(self.images[index])
        return (self.transform(image) if self.transform else image), index

    def image(self, index: int) -> Image.Image:
        """The original image ``index`` (figures)."""
        return load_rgb(self.images[index])
