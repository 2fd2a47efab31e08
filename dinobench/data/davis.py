"""DAVIS-2017 semi-supervised video object segmentation: ``JPEGImages/<res>/<seq>/*.jpg``,
``Annotations/<res>/<seq>/*.png`` (palette PNGs of object ids, 0 = background, 255 = void) and
``ImageSets/<year>/<split>.txt`` (one sequence per line); ``--data-root`` is the folder holding them.

An item is a whole sequence (:class:`Sequence`: its frame and annotation files); the tracking protocol
encodes its frames (cached per sequence) and propagates the first frame's annotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dinobench.data.base import check_pixels, fingerprint_of, image_size
from dinobench.data.layout import name_component, read_lines, root_folder
from dinobench.errors import DataError
from dinobench.typed_config import reader_options


@dataclass
class DavisOptions:
    """``dataset=dict(type="davis2017", ...)``: which DAVIS sequence list and resolution to read (split ``val``)."""

    root: str | None = None  # the folder holding JPEGImages/, Annotations/, ImageSets/; --data-root wins over it
    year: int = 2017  # the list ImageSets/<year>/<split>.txt
    split: str = "val"
    resolution: str = "480p"  # JPEGImages/<resolution>/, Annotations/<resolution>/
    sequences: list[str] | None = None  # only these sequences of the list; None = all


@dataclass(frozen=True)
class Sequence:
    """One video: its name, frame files and annotation files (same stems, in order)."""

    name: str
    frames: tuple[str, ...]
    annotations: tuple[str, ...]
    fingerprint: str


def load_ids(path: str | Path) -> np.ndarray:
    """Object ids ``[H, W]`` (uint8) of a palette (or grey) annotation PNG."""
    try:
        with Image.open(path) as img:
            check_pixels(path, *img.size)
            if img.mode not in ("P", "L"):
                raise DataError(f"{path}: annotation is {img.mode}; DAVIS annotations are palette PNGs of object ids")
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: cannot read annotation ({exc}); fix or remove the file") from exc


def check_sequence(name: str, frames: list[Path], annotations: list[Path]) -> None:
    """One DataError line unless every frame and annotation of sequence ``name`` has one size, the first annotation
    holds objects 1..K (contiguous, at least one: the evaluation scores objects 1..max id) and no later frame an id
    above K (255 is void)."""
    size = image_size(frames[0])
    for path in [*frames[1:], *annotations]:
        other = image_size(path)
        if other != size:
            raise DataError(f"{path}: {other[0]}x{other[1]} but sequence {name!r} is {size[0]}x{size[1]}; frames and "
                            f"annotations of a sequence share one size")
    first = set(np.unique(load_ids(annotations[0])).tolist()) - {0, 255}
    count = max(first, default=0)
    if not first or first != set(range(1, count + 1)):
        raise DataError(f"{annotations[0]}: the first annotation of {name!r} holds object ids {sorted(first)[:8]}; it "
                        f"needs objects 1..K without gaps (the evaluation scores ids 1..max id); relabel it")
    for path in annotations[1:]:
        ids = load_ids(path)
        later = int(ids[ids != 255].max(initial=0))
        if later > count:
            raise DataError(f"{path}: object id {later} of {name!r} is not in its first annotation (ids 1..{count}); "
                            f"relabel it")


class DavisSequences(Dataset):
    """The sequences of one DAVIS split."""

    def __init__(self, name: str, split: str, sequences: list[Sequence]) -> None:
        self.name, self.split, self.sequences = name, split, sequences
        self.fingerprint = fingerprint_of([s.fingerprint for s in sequences])

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> Sequence:
        return self.sequences[index]

    def describe(self) -> dict[str, Any]:
        """What the record stores about this split."""
        return {"split": self.split, "sequences": len(self), "frames": sum(len(s.frames) for s in self.sequences),
                "fingerprint": self.fingerprint}


def build_davis2017(cfg: dict[str, Any], data_root: str | None) -> dict[str, DavisSequences]:
    """The ``val`` split (``dataset.split``, ``dataset.year``, ``dataset.resolution`` configurable)."""
    cfg = reader_options(DavisOptions, cfg)
    expected = "the folder holding JPEGImages/, Annotations/ and ImageSets/"
    root = root_folder(cfg, data_root, "davis2017", expected)
    resolution, year, split = cfg["resolution"], str(cfg["year"]), cfg["split"]
    listing = root / "ImageSets" / year / f"{split}.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: sequence list missing; --data-root must be {expected}")
    names = [name_component(line.strip(), listing, "sequence name") for line in read_lines(listing)]
    if cfg["sequences"]:
        names = [n for n in names if n in set(cfg["sequences"])]
    if not names:
        raise DataError(f"{listing}: lists no sequences")
    sequences = []
    for name in names:
        frame_dir, ann_dir = root / "JPEGImages" / resolution / name, root / "Annotations" / resolution / name
        if not frame_dir.is_dir() or not ann_dir.is_dir():
            raise DataError(f"{frame_dir if not frame_dir.is_dir() else ann_dir}: sequence {name!r} of {listing.name} "
                            f"is missing")
        frames = sorted(p for p in frame_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        annotations = [ann_dir / f"{p.stem}.png" for p in frames]
        missing = [a.name for a in annotations if not a.is_file()]
        if not frames or missing:
            raise DataError(f"{ann_dir}: {len(missing)} of {len(frames)} frames have no annotation (first: "
                            f"{missing[:1]})" if frames else f"{frame_dir}: no frames")
        check_sequence(name, frames, annotations)
        fingerprint = fingerprint_of({"name": name, "files": [(p.name, p.stat().st_size) for p in frames + annotations]})
        sequences.append(Sequence(name, tuple(map(str, frames)), tuple(map(str, annotations)), fingerprint))
    return {"val": DavisSequences("davis2017", split, sequences)}
