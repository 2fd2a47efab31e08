"""DINO multi-crop augmentation (the official DINOv3 ``DataAugmentationDINO``), reproducible and small-image safe.

Two global crops and ``local_crops_number`` local crops, each random-resized-cropped (bicubic) and
flipped, then colour-jittered, blurred (and, for global crop 2, solarized) and normalised. Every
random draw comes from torch's RNG, so ``torch.manual_seed`` (as in each DataLoader worker) fixes
the crops. With ``gram_teacher_crops_size``, the global crops are cut once at the larger size and
resized to both the student and the Gram-teacher resolution (same geometry, two resolutions).

The blur probabilities are the intended ones (1.0 / 0.1 / 0.5, as in BYOL and DINO). The
official code passes ``1 - p`` to ``RandomApply`` and so blurs with 0.0 / 0.9 / 0.5
(facebookresearch/dinov3#286); ``blur_probabilities=OFFICIAL_EFFECTIVE_BLUR_PROBABILITIES``
reproduces what the released checkpoints were trained with.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

logger = logging.getLogger("dinobench")

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

#: blur probabilities (global crop 1, global crop 2, local crops): intended, and as the official code runs
INTENDED_BLUR_PROBABILITIES = (1.0, 0.1, 0.5)
OFFICIAL_EFFECTIVE_BLUR_PROBABILITIES = (0.0, 0.9, 0.5)

BICUBIC = v2.InterpolationMode.BICUBIC


class RandomGaussianBlur:
    """Gaussian blur with probability ``p``, sigma ~ U[radius_min, radius_max] px (torch RNG).

    The kernel is ``kernel_size`` (9, as the official) but shrunk to the largest odd size that fits
    the image, so tiny crops (a few pixels) blur instead of failing in reflect padding.
    """

    def __init__(self, p: float = 0.5, radius_min: float = 0.1, radius_max: float = 2.0, kernel_size: int = 9):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"blur probability must be in [0, 1], got {p}")
        self.p, self.radius_min, self.radius_max, self.kernel_size = p, radius_min, radius_max, kernel_size

    def __call__(self, img: Any) -> Any:
        if torch.rand(1).item() >= self.p:  # one draw per call, whatever p, like RandomApply
            return img
        sigma = torch.empty(1).uniform_(self.radius_min, self.radius_max).item()
        smallest = min(TF.get_size(img))
        kernel = min(self.kernel_size, smallest if smallest % 2 else smallest - 1)
        if kernel < 3:
            return img
        return TF.gaussian_blur(img, [kernel, kernel], [sigma, sigma])

    def __repr__(self) -> str:
        return (f"RandomGaussianBlur(p={self.p}, radius=({self.radius_min}, {self.radius_max}), "
                f"kernel_size<={self.kernel_size})")


def _plain(t: Tensor) -> Tensor:
    """Drop the ``tv_tensors.Image`` subclass so crops are ordinary tensors."""
    return t.as_subclass(Tensor)


class MultiCropAugmentation:
    """Image -> ``{"global_crops": [2 x C,G,G], "global_crops_teacher": [...], "local_crops": [n x C,L,L], ...}``."""

    def __init__(
        self,
        global_crops_scale: Sequence[float] = (0.32, 1.0),
        local_crops_scale: Sequence[float] = (0.05, 0.32),
        local_crops_number: int = 8,
        global_crops_size: int = 224,
        local_crops_size: int = 96,
        gram_teacher_crops_size: int | None = None,
        gram_teacher_no_distortions: bool = False,
        teacher_no_color_jitter: bool = False,
        local_crops_subset_of_global_crops: bool = False,
        patch_size: int = 16,
        share_color_jitter: bool = False,
        horizontal_flips: bool = True,
        mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
        std: Sequence[float] = IMAGENET_DEFAULT_STD,
        blur_probabilities: Sequence[float] = INTENDED_BLUR_PROBABILITIES,
        blur_radius: Sequence[float] = (0.1, 2.0),
        blur_kernel_size: int = 9,
    ):
        if local_crops_subset_of_global_crops and local_crops_size > global_crops_size:
            raise ValueError("local_crops_subset_of_global_crops needs local_crops_size <= global_crops_size")
        self.global_crops_scale = tuple(global_crops_scale)
        self.local_crops_scale = tuple(local_crops_scale)
        self.local_crops_number = int(local_crops_number)
        self.global_crops_size = int(global_crops_size)
        self.local_crops_size = int(local_crops_size)
        self.gram_teacher_crops_size = gram_teacher_crops_size
        self.gram_teacher_no_distortions = gram_teacher_no_distortions
        self.teacher_no_color_jitter = teacher_no_color_jitter
        self.local_crops_subset_of_global_crops = local_crops_subset_of_global_crops
        self.patch_size = int(patch_size)
        self.share_color_jitter = share_color_jitter
        self.mean, self.std = tuple(mean), tuple(std)
        flip_p = 0.5 if horizontal_flips else 0.0

        # cut global crops once at the largest requested size, then resize to each resolution
        global_crop_max_size = max(self.global_crops_size, gram_teacher_crops_size or 0)
        self.geometric_augmentation_global = v2.Compose([
            v2.RandomResizedCrop(global_crop_max_size, scale=self.global_crops_scale, interpolation=BICUBIC),
            v2.RandomHorizontalFlip(p=flip_p),
        ])
        self.geometric_augmentation_local = v2.Compose([
            v2.RandomResizedCrop(self.local_crops_size, scale=self.local_crops_scale, interpolation=BICUBIC),
            v2.RandomHorizontalFlip(p=flip_p),
        ])

        identity: Callable = v2.Identity()
        self.resize_global: Callable = identity  # before the distortions
        self.resize_global_post_transf: Callable = identity  # after normalisation
        self.resize_gram_teacher: Callable | None = None
        if gram_teacher_crops_size is not None:
            to_global = v2.Resize(self.global_crops_size, interpolation=BICUBIC)
            if gram_teacher_no_distortions:
                # the Gram teacher sees the undistorted crop: resize first, so the blur acts at the final size
                self.resize_global = to_global
            else:
                # distortions are shared by both resolutions: distort at the large size, resize afterwards
                self.resize_global_post_transf = to_global
            self.resize_gram_teacher = v2.Resize(int(gram_teacher_crops_size), interpolation=BICUBIC)

        color_jittering = v2.Compose([
            v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ])
        p_blur1, p_blur2, p_blur_local = blur_probabilities
        blur = dict(radius_min=blur_radius[0], radius_max=blur_radius[1], kernel_size=blur_kernel_size)
        global_transfo1_extra = RandomGaussianBlur(p=p_blur1, **blur)
        global_transfo2_extra = v2.Compose([
            RandomGaussianBlur(p=p_blur2, **blur),
            v2.RandomSolarize(threshold=128, p=0.2),
        ])
        local_transfo_extra = RandomGaussianBlur(p=p_blur_local, **blur)

        self.normalize = v2.Compose([
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(self.mean), std=list(self.std)),
            _plain,
        ])
        self.color_jittering = color_jittering if share_color_jitter else None
        jitter = [] if share_color_jitter else [color_jittering]
        self.global_transfo1 = v2.Compose([self.resize_global, *jitter, global_transfo1_extra, self.normalize])
        self.global_transfo2 = v2.Compose([self.resize_global, *jitter, global_transfo2_extra, self.normalize])
        self.local_transfo = v2.Compose([*jitter, local_transfo_extra, self.normalize])
        logger.debug("multi-crop augmentation: %r", self)

    def __repr__(self) -> str:
        return (f"MultiCropAugmentation(global={self.global_crops_size} {self.global_crops_scale}, "
                f"local={self.local_crops_number}x{self.local_crops_size} {self.local_crops_scale}, "
                f"gram={self.gram_teacher_crops_size})")

    def __call__(self, image: Image.Image | Tensor) -> dict[str, Any]:
        """Crops of one image (PIL of any mode/size, converted to RGB; or a uint8 ``[C, H, W]`` tensor)."""
        if isinstance(image, Image.Image) and image.mode != "RGB":
            image = image.convert("RGB")
        if self.color_jittering is not None:
            image = self.color_jittering(image)
        output: dict[str, Any] = {}

        im1_base = self.geometric_augmentation_global(image)
        global_crop_1_transf = self.global_transfo1(im1_base)
        global_crop_1 = self.resize_global_post_transf(global_crop_1_transf)
        im2_base = self.geometric_augmentation_global(image)
        global_crop_2_transf = self.global_transfo2(im2_base)
        global_crop_2 = self.resize_global_post_transf(global_crop_2_transf)
        output["global_crops"] = [global_crop_1, global_crop_2]

        if self.teacher_no_color_jitter:
            output["global_crops_teacher"] = [self._undistorted(im, self.global_crops_size) for im in (im1_base, im2_base)]
        else:
            output["global_crops_teacher"] = [global_crop_1, global_crop_2]

        if self.resize_gram_teacher is not None:
            if self.gram_teacher_no_distortions:
                gram = [self._undistorted(im, None) for im in (im1_base, im2_base)]
            else:
                gram = [self.resize_gram_teacher(c) for c in (global_crop_1_transf, global_crop_2_transf)]
            output["gram_teacher_crops"] = gram

        if self.local_crops_subset_of_global_crops:
            output["local_crops"], output["offsets"] = self._local_crops_from_globals(im1_base, im2_base)
        else:
            output["local_crops"] = [
                self.local_transfo(self.geometric_augmentation_local(image)) for _ in range(self.local_crops_number)
            ]
        return output

    def _undistorted(self, im_base: Any, size: int | None) -> Tensor:
        """Normalised crop without colour/blur/solarize, at the global size (``size``) or the Gram size (``None``)."""
        if size is None:
            return self.normalize(self.resize_gram_teacher(im_base))
        # the official normalises im_base at the max crop size; resize so teacher and student match
        return self.resize_global_post_transf(self.normalize(self.resize_global(im_base)))

    def _local_crops_from_globals(self, im1_base: Any, im2_base: Any) -> tuple[list[Tensor], list[tuple[int, int]]]:
        """Patch-aligned local windows cut from the (distorted) global crops, half from each."""
        gs, ls, ps = self.global_crops_size, self.local_crops_size, self.patch_size
        to_global = v2.Resize(gs, interpolation=BICUBIC)  # no-op unless the Gram size enlarged the base crop
        bases = [im1_base] * (self.local_crops_number // 2) + [im2_base] * (self.local_crops_number // 2)
        crops, offsets = [], []
        for base in bases:
            img = self.local_transfo(to_global(base))
            # the official draws from [0, (gs - ls) // ps) and never uses the last aligned window
            rx, ry = (torch.randint(0, (gs - ls) // ps + 1, (2,)) * ps).tolist()
            crops.append(img[:, rx : rx + ls, ry : ry + ls])
            offsets.append((rx, ry))
        return crops, offsets
