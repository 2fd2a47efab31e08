"""Image-classification dataset base: a list of (source, label) samples plus a fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dinobench.errors import ConfigError, DataError
from dinobench.utils.hashing import fingerprint_of  # also the datasets' fingerprint helper (re-exported)

#: the decompression-bomb limit of every image, tile and video-frame reader: PIL's default (~89.5 Mpx), raised or
#: lowered with ``$DINOBENCH_MAX_IMAGE_PIXELS`` when you trust larger files
DEFAULT_MAX_PIXELS = 89_478_485


def max_pixels() -> int:
    """The pixel limit (width x height) a reader decodes: ``$DINOBENCH_MAX_IMAGE_PIXELS`` or PIL's default."""
    import os

    raw = os.environ.get("DINOBENCH_MAX_IMAGE_PIXELS", "")
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"$DINOBENCH_MAX_IMAGE_PIXELS={raw!r}: expected a positive number of pixels")
    return value


def check_pixels(path: str | Path, width: int, height: int, what: str = "image") -> None:
    """One DataError line when a ``width x height`` ``what`` is above :func:`max_pixels` (checked before decoding)."""
    limit = max_pixels()
    if int(width) * int(height) > limit:
        raise DataError(f"{path}: {what} of {width}x{height} pixels is above the decompression-bomb limit of {limit}; "
                        f"resize it, or set DINOBENCH_MAX_IMAGE_PIXELS if you trust the file")


def cache_fingerprint_of(fingerprint: str, paths: Sequence[str | Path], **extra: Any) -> str:
    """The feature-cache fingerprint of a split: its content ``fingerprint`` plus the modification times of its
    files (an image replaced in place is never served stale), and any ``extra`` JSON-able keys."""
    return fingerprint_of({"fingerprint": fingerprint, **extra, "mtimes": [Path(p).stat().st_mtime_ns for p in paths]})


#: modes holding more than 8 bits per channel: 16-bit integers are scaled to 8 bits (``v / 257``), not clipped
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image from its header (nothing decoded), within the decompression-bomb limit."""
    try:
        with Image.open(path) as img:
            check_pixels(path, *img.size)
            return img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}); fix or remove the file") from None


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB; a corrupt, unreadable or oversized (decompression bomb) file, or a 32-bit
    integer / float image whose range is unknown, raises :class:`DataError` naming it. 16-bit images are scaled
    to 8 bits (PIL's ``convert`` would clip every value above 255)."""
    try:
        with Image.open(path) as img:
            check_pixels(path, *img.size)  # before decoding (PIL itself refuses only at twice its limit)
            if img.mode in _SIXTEEN_BIT:
                import numpy as np

                scaled = (np.asarray(img, dtype=np.uint32) // 257).astype(np.uint8)
                return Image.fromarray(scaled, mode="L").convert("RGB")
            if img.mode in ("I", "F"):
                raise DataError(f"{path}: {img.mode!r} image ({'32-bit integer' if img.mode == 'I' else 'float'} "
                                f"pixels, range unknown); convert it to 8- or 16-bit first")
            return img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({exc}); resize it, or raise "
                        f"PIL.Image.MAX_IMAGE_PIXELS if you trust it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); fix or remove the file") from exc


class ClassificationDataset(Dataset):
    """Samples ``(image source, label)``; ``transform`` maps a PIL image to a tensor.

    Subclasses implement :meth:`load` (source -> PIL image) and set :attr:`fingerprint`,
    a content hash that changes whenever the images or the split change.
    """

    def __init__(self, name: str, split: str, samples: Sequence[tuple[Any, int]], classes: Sequence[str],
                 fingerprint: str, transform: Callable | None = None) -> None:
        self.name, self.split = name, split
        self.samples = list(samples)
        self.classes = list(classes)
        self.fingerprint = fingerprint
        self.transform = transform

    @property
    def labels(self) -> list[int]:
        """Integer label of every sample, in order."""
        return [label for _, label in self.samples]

    def load(self, source: Any) -> Image.Image:
        """Return the image for ``source`` as PIL RGB."""
        return load_rgb(source)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        source, label = self.samples[index]
        image = self.load(source)
        return (self.transform(image) if self.transform else image), label

    def describe(self) -> dict[str, Any]:
        """What a result record stores about this split."""
        return {"split": self.split, "size": len(self), "num_classes": len(self.classes),
                "fingerprint": self.fingerprint}
