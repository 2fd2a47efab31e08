"""Dense datasets: semantic segmentation (ADE20K, image+mask folders) and depth (NYU-Depth v2 in
the BTS layout, image+depth folders).

Each builder validates the whole layout (folders, split files, image/target pairing) before any
compute and raises a one-line :class:`DataError` naming the path and the fix. Samples are dicts:

* segmentation: ``image`` float [3, H, W] in [0, 1], ``mask`` long [H, W] (``ignore_index`` = 255;
  with ``reduce_zero_label`` 0 -> 255 and k -> k-1, as mmseg does for ADE20K), ``name``;
* depth: ``image`` as above, ``depth`` float [H, W] in metres (0 = no reading), ``name``.

A joint ``transform`` (see :mod:`dinobench.data.dense_transforms`) maps that dict to the
normalised, augmented one; the dense protocol sets it (the runner leaves ``transform=None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from dinobench.data.base import check_pixels, fingerprint_of, load_rgb
from dinobench.data.layout import file_listing, first_samples, images_in, pair_by_stem, require_dir, root_folder
from dinobench.errors import DataError
from dinobench.typed_config import reader_options

IGNORE_INDEX = 255

#: the 150 ADE20K (SceneParsing) class names, in label order 1..150 (0 = "other", ignored)
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
)
assert len(ADE20K_CLASSES) == 150


# ----------------------------------------------------------------------------- file readers
def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB -> float tensor [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


def load_mask(path: str | Path) -> np.ndarray:
    """A label PNG (mode L or P: one class id per pixel) as an int64 array [H, W]."""
    try:
        with Image.open(path) as img:
            check_pixels(path, *img.size, "mask")
            if img.mode not in ("L", "P", "I", "I;16"):
                raise DataError(f"{path}: mask has mode {img.mode}; expected a single-channel label PNG "
                                f"(one class id per pixel, mode L or P), not a colour-coded image")
            return np.asarray(img).astype(np.int64)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read mask ({type(exc).__name__}: {exc}); fix or remove the file") from exc


def load_depth(path: str | Path, depth_scale: float = 1000.0) -> np.ndarray:
    """A 16-bit depth PNG divided by ``depth_scale`` (1000: millimetres -> metres) as float32 [H, W]."""
    try:
        with Image.open(path) as img:
            check_pixels(path, *img.size, "depth map")
            if img.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise DataError(f"{path}: depth image has mode {img.mode}; expected a 16-bit PNG "
                                f"(depth x {depth_scale:g}, e.g. millimetres), 0 = no reading")
            return np.asarray(img).astype(np.float32) / np.float32(depth_scale)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read depth ({type(exc).__name__}: {exc}); fix or remove the file") from exc


def reduce_zero_label(mask: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """mmseg's reduce-zero-label: 0 -> ignore, k -> k-1 (an existing ``ignore_index`` stays ignored)."""
    out = mask.astype(np.int64) - 1
    out[(mask == 0) | (mask == ignore_index)] = ignore_index
    return out


# ----------------------------------------------------------------------------- datasets
class SegmentationDataset(Dataset):
    """(image, label-mask) pairs; ``__getitem__`` -> ``dict(image, mask, name)`` (see module doc)."""

    def __init__(self, name: str, split: str, samples: Sequence[tuple[str, str]], classes: Sequence[str],
                 fingerprint: str, reduce_zero_label: bool = False, ignore_index: int = IGNORE_INDEX,
                 transform: Callable[[dict], dict] | None = None) -> None:
        self.name, self.split = name, split
        self.samples = list(samples)
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        self.fingerprint = fingerprint
        self.reduce_zero_label = bool(reduce_zero_label)
        self.ignore_index = int(ignore_index)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, mask_path = self.samples[index]
        image = load_rgb(image_path)
        mask = load_mask(mask_path)
        if mask.shape != (image.height, image.width):
            raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image {image_path} is "
                            f"{image.width}x{image.height}; masks must have their image's size")
        mask = self._labels(mask, mask_path)
        sample = {"image": image_to_tensor(image), "mask": torch.from_numpy(mask), "name": Path(image_path).stem}
        return self.transform(sample) if self.transform is not None else sample

    def _labels(self, mask: np.ndarray, mask_path: str) -> np.ndarray:
        """The training labels of a mask read from ``mask_path``; DataError on a value outside the classes."""
        if self.reduce_zero_label:
            mask = reduce_zero_label(mask, self.ignore_index)
        bad = (mask < 0) | ((mask >= self.num_classes) & (mask != self.ignore_index))
        if bad.any():  # cross-entropy would raise IndexError (a device-side assert on CUDA); metrics would skip it
            value = int(mask[bad].flat[0])
            raise DataError(f"{mask_path}: label {value} at {int(bad.sum())} pixel(s) is outside [0, {self.num_classes})"
                            f" and is not the ignore index {self.ignore_index}"
                            f"{' (after reduce_zero_label)' if self.reduce_zero_label else ''}; fix the mask or the "
                            f"dataset's classes")
        return mask

    def check_ground_truth(self) -> None:
        """DataError unless some mask of the split labels a pixel (not all ``ignore_index``): a split without one
        trains on a zero loss or scores nothing, and would still write a record. Stops at the first labelled mask."""
        for _, mask_path in self.samples:
            if (self._labels(load_mask(mask_path), mask_path) != self.ignore_index).any():
                return
        raise DataError(f"{self.name} {self.split}: all {len(self)} masks are the ignore index {self.ignore_index}"
                        f"{' after reduce_zero_label (0 = unlabelled)' if self.reduce_zero_label else ''}; check the "
                        "annotation files and dataset.reduce_zero_label")

    def describe(self) -> dict[str, Any]:
        """What a result record stores about this split."""
        return {"split": self.split, "size": len(self), "num_classes": self.num_classes,
                "reduce_zero_label": self.reduce_zero_label, "ignore_index": self.ignore_index,
                "fingerprint": self.fingerprint}


class DepthDataset(Dataset):
    """(image, depth PNG) pairs; ``__getitem__`` -> ``dict(image, depth, name)`` (metres, 0 = invalid).

    ``min_depth``/``max_depth`` is the valid range (metrics and losses mask outside it);
    ``eigen_crop`` says evaluation uses the NYU Eigen crop (:func:`dinobench.metrics.dense.eigen_crop_box`).
    """

    def __init__(self, name: str, split: str, samples: Sequence[tuple[str, str]], fingerprint: str,
                 min_depth: float = 1e-3, max_depth: float = 10.0, eigen_crop: bool = False,
                 depth_scale: float = 1000.0, transform: Callable[[dict], dict] | None = None,
                 names: Sequence[str] | None = None, skipped_without_gt: int = 0) -> None:
        self.name, self.split = name, split
        self.samples = list(samples)
        self.fingerprint = fingerprint
        self.min_depth, self.max_depth = float(min_depth), float(max_depth)
        self.eigen_crop = bool(eigen_crop)
        self.depth_scale = float(depth_scale)
        self.transform = transform
        self._names = list(names) if names is not None else [Path(p).stem for p, _ in self.samples]
        self.skipped_without_gt = int(skipped_without_gt)  # split-file lines whose depth is "None"

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, depth_path = self.samples[index]
        image = load_rgb(image_path)
        depth = load_depth(depth_path, self.depth_scale)
        if not np.isfinite(depth).all() or (depth < 0).any():
            raise DataError(f"{depth_path}: depth holds NaN, inf or negative values; 0 marks a missing reading")
        if depth.shape != (image.height, image.width):
            raise DataError(f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]} but its image {image_path} "
                            f"is {image.width}x{image.height}; depth maps must have their image's size")
        sample = {"image": image_to_tensor(image), "depth": torch.from_numpy(depth), "name": self._names[index]}
        return self.transform(sample) if self.transform is not None else sample

    def check_ground_truth(self) -> None:
        """DataError unless some depth map of the split has a pixel in ``(min_depth, max_depth]``: a split without
        one would train on a zero loss (or score nothing) and still write a record. Stops at the first valid map."""
        for _, depth_path in self.samples:
            depth = load_depth(depth_path, self.depth_scale)
            if ((depth > self.min_depth) & (depth <= self.max_depth)).any():
                return
        raise DataError(f"{self.name} {self.split}: none of the {len(self)} depth maps has a valid pixel in "
                        f"({self.min_depth:g}, {self.max_depth:g}] m (depth_scale {self.depth_scale:g}); check the "
                        f"depth files, dataset.depth_scale and dataset.min_depth / max_depth")

    def describe(self) -> dict[str, Any]:
        """What a result record stores about this split."""
        return {"split": self.split, "size": len(self), "min_depth": self.min_depth, "max_depth": self.max_depth,
                "eigen_crop": self.eigen_crop, "depth_scale": self.depth_scale,
                "skipped_without_gt": self.skipped_without_gt, "fingerprint": self.fingerprint}


# ----------------------------------------------------------------------------- reader options
@dataclass
class ADE20KOptions:
    """``dataset=dict(type="ade20k", ...)``: ADEChallengeData2016's ``images/`` + ``annotations/`` folders."""

    root: str | None = None  # ADEChallengeData2016 or its parent; --data-root wins over it
    reduce_zero_label: bool = True  # 0 ("other") -> ignore, k -> k-1, as mmseg does for ADE20K
    train_split: str = "training"  # folder under images/ and annotations/
    val_split: str = "validation"
    max_train_samples: int | None = None  # only the first N pairs (sorted) of the split; None = all
    max_val_samples: int | None = None


@dataclass
class SegFolderOptions:
    """``dataset=dict(type="seg_folder", ...)``: ``<root>/<split>/{images,masks}`` and the class names."""

    root: str | None = None  # --data-root wins over it
    # class names, list index = mask id (None: <root>/classes.txt); ints allowed, used as their text
    classes: list[str | int] | None = None
    reduce_zero_label: bool = False  # True when id 0 means "unlabelled": 0 -> ignore, k -> k-1
    train_split: str = "train"  # folder under the root
    val_split: str = "val"
    max_train_samples: int | None = None  # only the first N pairs (sorted) of the split; None = all
    max_val_samples: int | None = None


@dataclass
class NYUOptions:
    """``dataset=dict(type="nyu", ...)``: NYU-Depth v2 in the BTS layout (data folders + split files)."""

    root: str | None = None  # --data-root wins over it
    train_dir: str = "sync"  # the train split file's paths are relative to <root>/<train_dir>
    val_dir: str = "official_splits/test"
    # looked up in <root>, then <root>/train_test_inputs (or an absolute path)
    train_split_file: str = "nyudepthv2_train_files_with_gt.txt"
    val_split_file: str = "nyudepthv2_test_files_with_gt.txt"
    depth_scale: float = 1000.0  # stored PNG value / depth_scale = metres (1000: millimetres)
    min_depth: float = 1e-3  # valid depth range (min_depth, max_depth] in metres
    max_depth: float = 10.0
    eigen_crop: bool = True  # score the val split inside the Eigen crop
    max_train_samples: int | None = None  # only the first N lines of the split file; None = all
    max_val_samples: int | None = None


@dataclass
class DepthFolderOptions:
    """``dataset=dict(type="depth_folder", ...)``: ``<root>/<split>/{images,depth}`` with 16-bit depth PNGs."""

    root: str | None = None  # --data-root wins over it
    train_split: str = "train"  # folder under the root
    val_split: str = "val"
    depth_scale: float = 1000.0  # stored PNG value / depth_scale = metres (1000: millimetres); > 0
    min_depth: float = 1e-3  # valid depth range (min_depth, max_depth] in metres
    max_depth: float = 10.0
    eigen_crop: bool = False  # score the val split inside the Eigen crop (NYU-sized images)
    max_train_samples: int | None = None  # only the first N pairs (sorted) of the split; None = all
    max_val_samples: int | None = None


def _depth_range(cfg: dict[str, Any]) -> tuple[float, float]:
    lo, hi = float(cfg["min_depth"]), float(cfg["max_depth"])
    if not 0 <= lo < hi:
        raise DataError(f"dataset.min_depth={lo} / max_depth={hi}: need 0 <= min_depth < max_depth")
    return lo, hi


# ----------------------------------------------------------------------------- builders
def build_ade20k(cfg: dict[str, Any], data_root: str | None) -> dict[str, SegmentationDataset]:
    """ADE20K (SceneParsing 150): ``ADEChallengeData2016/{images,annotations}/{training,validation}``."""
    cfg = reader_options(ADE20KOptions, cfg)
    expected = "ADEChallengeData2016/images/{training,validation}/*.jpg + annotations/{training,validation}/*.png"
    root = root_folder(cfg, data_root, "ade20k", expected)
    if not (root / "images").is_dir() and (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"  # the parent folder was given
    rzl = cfg["reduce_zero_label"]
    splits = {}
    for split_key in ("train", "val"):
        folder = cfg[f"{split_key}_split"]
        images = images_in(require_dir(root / "images" / folder, f"{root}/images/{folder}/*.jpg ({expected})"))
        ann_dir = require_dir(root / "annotations" / folder, f"{root}/annotations/{folder}/*.png ({expected})")
        pairs = first_samples(pair_by_stem(images, ann_dir, ".png", "annotation"), cfg, split_key)
        fp = fingerprint_of({"files": file_listing(pairs, root), "reduce_zero_label": rzl})
        splits[split_key] = SegmentationDataset("ade20k", split_key, pairs, ADE20K_CLASSES, fp, reduce_zero_label=rzl)
    return splits


def _read_classes(cfg: dict[str, Any], root: Path) -> list[str]:
    if cfg["classes"]:
        return [str(c) for c in cfg["classes"]]
    path = root / "classes.txt"
    if not path.is_file():
        raise DataError(f"{path}: missing; list one class name per line (line k = mask id k) or set dataset.classes")
    classes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not classes:
        raise DataError(f"{path}: no class names; list one class name per line (line k = mask id k)")
    return classes


def build_seg_folder(cfg: dict[str, Any], data_root: str | None) -> dict[str, SegmentationDataset]:
    """User segmentation data: ``<root>/{train,val}/images/*`` + ``<root>/{train,val}/masks/<stem>.png``."""
    cfg = reader_options(SegFolderOptions, cfg)
    expected = "DIR/{train,val}/images/*.{jpg,png} + DIR/{train,val}/masks/<same stem>.png (+ DIR/classes.txt)"
    root = root_folder(cfg, data_root, "seg_folder", expected)
    classes = _read_classes(cfg, root)
    rzl = cfg["reduce_zero_label"]
    if len(classes) > IGNORE_INDEX:
        raise DataError(f"{root}: {len(classes)} classes; at most {IGNORE_INDEX} fit beside ignore index "
                        f"{IGNORE_INDEX}")
    splits = {}
    for split_key in ("train", "val"):
        split_dir = root / cfg[f"{split_key}_split"]
        images = images_in(require_dir(split_dir / "images", f"{split_dir}/images/*.jpg ({expected})"))
        mask_dir = require_dir(split_dir / "masks", f"{split_dir}/masks/<stem>.png ({expected})")
        pairs = first_samples(pair_by_stem(images, mask_dir, ".png", "mask"), cfg, split_key)
        fp = fingerprint_of({"files": file_listing(pairs, root), "classes": classes, "reduce_zero_label": rzl})
        splits[split_key] = SegmentationDataset("seg_folder", split_key, pairs, classes, fp, reduce_zero_label=rzl)
    return splits


def _find_split_file(root: Path, name: str) -> Path:
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [root / name, root / "train_test_inputs" / name]
    for path in candidates:
        if path.is_file():
            return path
    raise DataError(f"{candidates[0]}: split file missing; put the BTS split file there (lines '<rgb> <depth> "
                    f"<focal>') or set dataset.train_split_file / dataset.val_split_file")


def _read_split_file(path: Path, data_dir: Path) -> tuple[list[tuple[str, str]], list[str], int]:
    """BTS split file -> (pairs, names, lines without ground truth); every listed file must exist."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read split file ({type(exc).__name__}: {exc})") from exc
    pairs, names, missing, no_gt = [], [], [], 0
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{number}: expected '<rgb path> <depth path> [focal]', got {line.strip()!r}")
        if fields[1] == "None":  # BTS marks frames without ground truth so; they cannot be used
            no_gt += 1
            continue
        rgb, depth = data_dir / fields[0].lstrip("/"), data_dir / fields[1].lstrip("/")
        for file in (rgb, depth):
            if not file.is_file():
                missing.append(str(file))
        pairs.append((str(rgb), str(depth)))
        names.append(str(Path(fields[0].lstrip("/")).with_suffix("")))
    if missing:
        raise DataError(f"{path}: {len(missing)} listed files are missing under {data_dir} (first: "
                        f"{', '.join(missing[:3])}); fix dataset root / train_dir / val_dir or the split file")
    if not pairs:
        raise DataError(f"{path}: no usable lines; expected '<rgb path> <depth path> <focal>' per line")
    return pairs, names, no_gt


def build_nyu(cfg: dict[str, Any], data_root: str | None) -> dict[str, DepthDataset]:
    """NYU-Depth v2 in the BTS layout: train list relative to ``<root>/sync``, test list relative to
    ``<root>/official_splits/test``; split files in ``<root>`` or ``<root>/train_test_inputs``."""
    cfg = reader_options(NYUOptions, cfg)
    expected = ("DIR/sync/<scene>/*, DIR/official_splits/test/<scene>/*, "
                "DIR/nyudepthv2_{train,test}_files_with_gt.txt")
    root = root_folder(cfg, data_root, "nyu", expected)
    lo, hi = _depth_range(cfg)
    scale = float(cfg["depth_scale"])
    splits = {}
    for split_key in ("train", "val"):
        data_dir = require_dir(root / cfg[f"{split_key}_dir"], f"the BTS layout ({expected})")
        split_file = _find_split_file(root, cfg[f"{split_key}_split_file"])
        pairs, names, no_gt = _read_split_file(split_file, data_dir)
        keep = len(first_samples(pairs, cfg, split_key))
        pairs, names = pairs[:keep], names[:keep]
        fp = fingerprint_of({"files": file_listing(pairs, root), "depth_scale": scale})
        splits[split_key] = DepthDataset("nyu", split_key, pairs, fp, min_depth=lo, max_depth=hi,
                                         eigen_crop=cfg["eigen_crop"] and split_key == "val",
                                         depth_scale=scale, names=names, skipped_without_gt=no_gt)
    return splits


def build_depth_folder(cfg: dict[str, Any], data_root: str | None) -> dict[str, DepthDataset]:
    """User depth data: ``<root>/{train,val}/images/*`` + ``<root>/{train,val}/depth/<stem>.png``
    (16-bit, metres x ``dataset.depth_scale``; 1000 = millimetres)."""
    cfg = reader_options(DepthFolderOptions, cfg)
    expected = "DIR/{train,val}/images/*.{jpg,png} + DIR/{train,val}/depth/<same stem>.png (uint16 mm)"
    root = root_folder(cfg, data_root, "depth_folder", expected)
    lo, hi = _depth_range(cfg)
    scale = float(cfg["depth_scale"])
    if scale <= 0:
        raise DataError(f"dataset.depth_scale={scale}: must be > 0 (stored value / depth_scale = metres)")
    splits = {}
    for split_key in ("train", "val"):
        split_dir = root / cfg[f"{split_key}_split"]
        images = images_in(require_dir(split_dir / "images", f"{split_dir}/images/* ({expected})"))
        depth_dir = require_dir(split_dir / "depth", f"{split_dir}/depth/<stem>.png ({expected})")
        pairs = first_samples(pair_by_stem(images, depth_dir, ".png", "depth map"), cfg, split_key)
        fp = fingerprint_of({"files": file_listing(pairs, root), "depth_scale": scale})
        splits[split_key] = DepthDataset("depth_folder", split_key, pairs, fp, min_depth=lo, max_depth=hi,
                                         eigen_crop=cfg["eigen_crop"] and split_key == "val",
                                         depth_scale=scale)
    return splits
