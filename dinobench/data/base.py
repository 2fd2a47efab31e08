"""Image-classification dataset base: a list of (source, label) samples plus a fingerprint."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dinobench.errors import DataError
from dinobench.utils.hashing import fingerprint_of  # also the datasets' fingerprint helper (re-exported)


def cache_fingerprint_of(fingerprint: str, paths: Sequence[str | Path], **extra: Any) -> str:
    """The feature-cache fingerprint of a split: its content ``fingerprint`` plus the modification times of its
    files (an image replaced in place is never served stale), and any ``extra`` JSON-able keys."""
    return fingerprint_of({"fingerprint": fingerprint, **extra, "mtimes": [Path(p).stat().st_mtime_ns for p in paths]})


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as RGB; a corrupt or unreadable file raises :class:`DataError` naming it."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
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
