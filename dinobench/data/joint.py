"""The one joint-transform system: torchvision ``transforms.v2`` pipelines over samples of ``tv_tensors``.

A sample is a dict; :class:`JointTransform` wraps its spatial entries by key (:data:`TV_TYPES`: ``image`` ->
``Image``, ``mask`` / ``depth`` / ``height`` / ``valid`` -> ``Mask``, ``boxes`` -> ``BoundingBoxes``, ``frames`` ->
``Video``), runs a v2 pipeline over the whole dict - so every geometric step (resize, crop, flip, rotation, pad)
moves the image and its targets together, with the right kernel per type (bilinear / bicubic for images,
nearest for masks and depth, box arithmetic for boxes) - and unwraps the result to plain tensors. Entries not
named in ``keys`` pass through untouched (a segmentation mask that must keep its original size in evaluation).

The random steps below draw from torch's global generator in ``make_params``, as every v2 transform does, so a
seeded sample (``SeededSamples``: seed, iteration, index) repeats exactly and a resumed run sees the same views.
Colour steps act on images only. Every first-party family with spatial targets (segmentation, depth, canopy
height, boxes, video clips, square pair images) builds its transforms from these parts, and so can a plugin
(``dinobench.api`` exports them).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

#: sample key -> the tv_tensor it is wrapped as (so v2 picks the kernel for its kind)
TV_TYPES: dict[str, type] = {"image": tv_tensors.Image, "mask": tv_tensors.Mask, "depth": tv_tensors.Mask,
                             "height": tv_tensors.Mask, "valid": tv_tensors.Mask,
                             "boxes": tv_tensors.BoundingBoxes, "frames": tv_tensors.Video}
IMAGES = (tv_tensors.Image, tv_tensors.Video)


def wrap(sample: dict[str, Any], keys: Sequence[str] | None = None) -> dict[str, Any]:
    """``sample`` with its entries named in ``keys`` (default: every key of :data:`TV_TYPES` it has) as tv_tensors;
    boxes are XYXY pixels on the image's canvas."""
    out = dict(sample)
    for key in keys if keys is not None else [k for k in TV_TYPES if k in sample]:
        value = sample[key]
        if TV_TYPES[key] is tv_tensors.BoundingBoxes:
            canvas = tuple(sample["image"].shape[-2:])
            out[key] = tv_tensors.BoundingBoxes(value, format="XYXY", canvas_size=canvas)  # type: ignore[call-arg]
        else:
            out[key] = TV_TYPES[key](value)
    return out


def unwrap(sample: dict[str, Any]) -> dict[str, Any]:
    """Plain contiguous tensors again (what collate functions, models and metrics take)."""
    return {k: v.as_subclass(torch.Tensor).contiguous() if isinstance(v, tv_tensors.TVTensor) else v
            for k, v in sample.items()}


class JointTransform:
    """A v2 ``pipeline`` applied jointly to the ``keys`` entries of a sample dict (default: all it has of
    :data:`TV_TYPES`); ``record_size`` adds ``size`` = the transformed image's (H, W)."""

    def __init__(self, pipeline: Sequence[Callable] | v2.Transform, keys: Sequence[str] | None = None,
                 record_size: bool = False) -> None:
        self.pipeline = pipeline if isinstance(pipeline, v2.Transform) else v2.Compose(list(pipeline))
        self.keys, self.record_size = (tuple(keys) if keys is not None else None), record_size

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = unwrap(self.pipeline(wrap(sample, self.keys)))
        if self.record_size:
            out["size"] = tuple(out["image"].shape[-2:])
        return out

    def __repr__(self) -> str:
        return f"JointTransform(keys={self.keys}, {self.pipeline})"


# ----------------------------------------------------------------------------- random draws
def uniform(lo: float, hi: float) -> float:
    """One float in ``[lo, hi)`` from torch's global generator."""
    return float(lo + (hi - lo) * torch.rand(()).item())


def coin(p: float) -> bool:
    """True with probability ``p`` (one draw)."""
    return bool(torch.rand(()).item() < p)


def random_offsets(height: int, width: int, crop: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of a ``crop`` inside ``height x width`` (0 where the crop is larger)."""
    oy = int(torch.randint(0, max(height - crop[0], 0) + 1, ()).item())
    ox = int(torch.randint(0, max(width - crop[1], 0) + 1, ()).item())
    return oy, ox


def _size(flat_inputs: list[Any]) -> tuple[int, int]:
    return tuple(v2._utils.query_size(flat_inputs))  # type: ignore[return-value]


def _crop(inpt: Any, top: int, left: int, height: int, width: int) -> Any:
    """In-bounds crop (the box is clipped to the input: nothing is padded here)."""
    h, w = inpt.shape[-2:]
    return F.crop(inpt, top, left, max(min(height, h - top), 0), max(min(width, w - left), 0))


# ----------------------------------------------------------------------------- geometric steps
class Rescale(v2.Transform):
    """Resize to ``size_fn(H, W, ratio)``: ``ratio`` drawn uniformly from ``ratio_range`` (no draw without one);
    images bilinear (antialiased), masks and depth nearest. ``images_only``: targets keep their size."""

    def __init__(self, size_fn: Callable[[int, int, float], tuple[int, int]],
                 ratio_range: tuple[float, float] | None = None, images_only: bool = False,
                 interpolation: InterpolationMode = InterpolationMode.BILINEAR) -> None:
        super().__init__()
        self.size_fn, self.ratio_range, self.images_only = size_fn, ratio_range, images_only
        self.interpolation = interpolation

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:  # noqa: D102
        ratio = uniform(*self.ratio_range) if self.ratio_range is not None else 1.0
        height, width = _size([i for i in flat_inputs if isinstance(i, IMAGES)] or flat_inputs)
        return {"size": tuple(self.size_fn(height, width, ratio))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        if (self.images_only and not isinstance(inpt, IMAGES)) or tuple(inpt.shape[-2:]) == params["size"]:
            return inpt
        return self._call_kernel(F.resize, inpt, list(params["size"]), interpolation=self.interpolation,
                                 antialias=True)


class FixedCrop(v2.Transform):
    """A crop given as fractions ``(x1, y1, x2, y2)`` of the size (DINOv3's NYUCrop), on image and targets."""

    def __init__(self, box: tuple[float, float, float, float]) -> None:
        super().__init__()
        self.box = box

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        h, w = inpt.shape[-2:]
        x1, y1, x2, y2 = self.box
        top, left = int(y1 * h), int(x1 * w)
        return self._call_kernel(F.crop, inpt, top, left, int(y2 * h) - top, int(x2 * w) - left)


class RandomCrop(v2.Transform):
    """A ``size`` crop at a random position, clipped to the input (pad first with :class:`PadTo` for a fixed size)."""

    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:  # noqa: D102
        height, width = _size(flat_inputs)
        top, left = random_offsets(height, width, self.size)
        return {"top": top, "left": left}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        return _crop(inpt, params["top"], params["left"], *self.size)


class CatMaxRatioCrop(RandomCrop):
    """mmseg's ``RandomCrop(cat_max_ratio)``: up to 10 draws for a crop in which no class of the mask (ignored
    pixels left out) covers ``cat_max_ratio`` or more; the last draw otherwise."""

    def __init__(self, size: tuple[int, int], cat_max_ratio: float, ignore_index: int) -> None:
        super().__init__(size)
        self.cat_max_ratio, self.ignore_index = cat_max_ratio, ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:  # noqa: D102
        mask = next(i for i in flat_inputs if isinstance(i, tv_tensors.Mask)).as_subclass(torch.Tensor)
        h, w = mask.shape[-2:]
        ch, cw = self.size
        top, left = random_offsets(h, w, self.size)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                crop = mask[..., top:top + ch, left:left + cw]
                _, counts = torch.unique(crop[crop != self.ignore_index], return_counts=True)
                if len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio:
                    break
                top, left = random_offsets(h, w, self.size)
        return {"top": top, "left": left}


class PadTo(v2.Transform):
    """Pad bottom / right up to ``size``: images with 0, masks and depth with ``target_fill``."""

    def __init__(self, size: tuple[int, int], target_fill: float = 0.0) -> None:
        super().__init__()
        self.size, self.target_fill = size, target_fill

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        dh, dw = max(self.size[0] - inpt.shape[-2], 0), max(self.size[1] - inpt.shape[-1], 0)
        if not (dh or dw):
            return inpt
        fill = 0.0 if isinstance(inpt, IMAGES) else self.target_fill
        return self._call_kernel(F.pad, inpt, [0, 0, dw, dh], fill=fill)


class RandomRotation(v2.Transform):
    """With probability ``p``, rotate by an angle uniform in ``[-degrees, degrees]`` (images bilinear, targets
    nearest, the uncovered corners 0); no draw at all when ``degrees`` is 0."""

    def __init__(self, degrees: float, p: float) -> None:
        super().__init__()
        self.degrees, self.p = float(degrees), float(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:  # noqa: D102
        if self.degrees > 0 and coin(self.p):
            return {"angle": uniform(-self.degrees, self.degrees)}
        return {"angle": None}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        if params["angle"] is None:
            return inpt
        mode = InterpolationMode.BILINEAR if isinstance(inpt, IMAGES) else InterpolationMode.NEAREST
        return self._call_kernel(F.rotate, inpt, params["angle"], interpolation=mode, fill=0.0)


# ----------------------------------------------------------------------------- image-only steps
class ImageOnly(v2.Transform):
    """``fn(image) -> image`` on images and videos only (colour steps); ``fn`` draws its own randomness."""

    _transformed_types = IMAGES

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        return tv_tensors.wrap(self.fn(inpt.as_subclass(torch.Tensor)), like=inpt)


class ToFloatImage(v2.Transform):
    """PIL image -> ``tv_tensors.Image`` float in [0, 1] (``x / 255``, torchvision v1's ``to_tensor`` kernel: v2's
    ``to_dtype(scale=True)`` multiplies by 1/255 and differs by one float32 ulp; this keeps the released numbers)."""

    _transformed_types = (PIL.Image.Image,)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:  # noqa: D102
        return tv_tensors.Image(TF.to_tensor(inpt))


def normalize(mean: Sequence[float], std: Sequence[float]) -> v2.Normalize:
    """``(image - mean) / std`` per channel, on images only (``mean``/``std`` on the [0, 1] scale)."""
    return v2.Normalize(list(mean), list(std))
