"""Canopy-height tiles: RGB imagery (GeoTIFF / PNG / JPEG) paired with height maps in metres (GeoTIFF / NPY /
PNG), the data of the released CHMv2 head (``dinov3_vitl16_chmv2``).

Layout (``dataset=dict(type="canopy_folder")``, ``--data-root DIR``)::

    DIR/{train,val}/images/<stem>.{tif,tiff,png,jpg}
    DIR/{train,val}/heights/<stem>.{tif,tiff,npy,png}

GeoTIFFs are read with ``tifffile`` (or ``rasterio`` when installed instead): images are 3 bands (bands first or
last, uint8, or uint16 scaled by ``dataset.image_max``), heights one float band whose ``GDAL_NODATA`` value (or
``dataset.nodata``) marks missing pixels. NPY heights are float metres; PNG heights are integers times
``dataset.height_scale`` (e.g. 0.01 for centimetres). A sample is ``dict(image [3, H, W] in [0, 1], height
[H, W] metres (NaN = no data), name)``; heights must have their image's size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dinobench.data.base import check_pixels, fingerprint_of
from dinobench.data.joint import JointTransform, RandomCrop, normalize
from dinobench.data.layout import file_listing, first_samples, require_dir, root_folder
from dinobench.errors import ConfigError, DataError
from dinobench.typed_config import reader_options

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
HEIGHT_SUFFIXES = (".tif", ".tiff", ".npy", ".png")
EXPECTED = "DIR/{train,val}/images/<stem>.{tif,png,jpg} + DIR/{train,val}/heights/<stem>.{tif,npy,png}"


@dataclass
class CanopyFolderOptions:
    """``dataset=dict(type="canopy_folder", ...)``: ``<root>/<split>/{images,heights}`` and how heights are read."""

    root: str | None = None  # --data-root wins over it
    train_split: str = "train"  # folder names of the two splits under the root
    val_split: str = "val"
    height_scale: float = 1.0  # PNG heights: stored integer x height_scale = metres (0.01: centimetres); > 0
    nodata: float | None = None  # stored value of missing heights, beside a GeoTIFF's own GDAL_NODATA
    max_height: float = 96.0  # metres; the range the head's bins cover; > 0
    image_max: float | None = None  # integer tiles are divided by it (None: the type's maximum), float tiles too (None: 1)
    max_train_samples: int | None = None  # only the first N tiles (sorted) of the split; None = all
    max_val_samples: int | None = None


def read_raster(path: str | Path) -> tuple[np.ndarray, float | None]:
    """``(array, nodata)`` of a GeoTIFF: bands last for multi-band rasters; ``nodata`` from ``GDAL_NODATA``."""
    path = Path(path)
    try:
        import tifffile
    except ImportError:
        tifffile = None
    try:
        if tifffile is not None:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                check_pixels(path, page.imagewidth, page.imagelength, "GeoTIFF tile")
                tag = page.tags.get("GDAL_NODATA")
                array, axes = page.asarray(), str(page.axes)
                nodata = float(str(tag.value).strip("\x00 ")) if tag is not None else None
            if array.ndim == 3 and axes[:1] in ("S", "C", "I", "Q"):
                array = np.moveaxis(array, 0, -1)  # planar (bands first) -> bands last
            return array, nodata
        try:
            import rasterio
        except ImportError as exc:
            raise DataError(f"{path}: reading GeoTIFF needs tifffile (pip install tifffile) or rasterio") from exc
        with rasterio.open(path) as src:
            check_pixels(path, src.width, src.height, "GeoTIFF tile")
            array, nodata = src.read(), src.nodata
        return (np.moveaxis(array, 0, -1) if array.shape[0] > 1 else array[0]), nodata
    except DataError:
        raise
    except Exception as exc:  # a broken file is a data problem with a name
        raise DataError(f"{path}: cannot read GeoTIFF ({type(exc).__name__}: {exc}); fix or remove the file") from exc


def load_canopy_image(path: str | Path, image_max: float | None = None) -> torch.Tensor:
    """An RGB tile as float ``[3, H, W]`` in [0, 1] (uint8 / 255, uint16 / ``image_max``, floats / ``image_max`` or as
    they are; a float tile outside [0, 1] is one DataError line, never clamped silently)."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        array, _ = read_raster(path)
        if array.ndim != 3 or array.shape[-1] < 3:
            raise DataError(f"{path}: expected an RGB raster (3 bands), got shape {array.shape}")
        array = array[..., :3]
        if array.dtype == np.uint8:
            scaled = array.astype(np.float32) / 255.0
        elif np.issubdtype(array.dtype, np.integer):
            top = float(image_max or np.iinfo(array.dtype).max)
            scaled = array.astype(np.float32) / top
        else:  # float tiles: already reflectances in [0, 1], or scaled by image_max
            scaled = array.astype(np.float32) / float(image_max or 1.0)
            finite = scaled[np.isfinite(scaled)]
            if finite.size and (finite.max() > 1.0 + 1e-6 or finite.min() < -1e-6):
                raise DataError(f"{path}: float tile values span {float(finite.min()):.4g}..{float(finite.max()):.4g}, "
                                f"outside [0, 1]; set dataset.image_max to the value that means full brightness")
    else:
        try:
            with Image.open(path) as img:
                check_pixels(path, *img.size)
                scaled = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    return torch.from_numpy(np.ascontiguousarray(scaled)).permute(2, 0, 1).clamp_(0.0, 1.0)


def load_heights(path: str | Path, height_scale: float = 1.0, nodata: float | None = None) -> np.ndarray:
    """A height map in metres, float32 ``[H, W]``, NaN where there is no data (``nodata``, non-finite, < 0)."""
    path = Path(path)
    suffix = path.suffix.lower()
    file_nodata = None
    if suffix in (".tif", ".tiff"):
        array, file_nodata = read_raster(path)
    elif suffix == ".npy":
        try:
            mapped = np.load(path, mmap_mode="r", allow_pickle=False)  # the header first: no allocation yet
            check_pixels(path, *(mapped.shape[::-1] if mapped.ndim == 2 else (mapped.size, 1)), "height map")
            array = np.array(mapped)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot read .npy heights ({type(exc).__name__}: {exc})") from exc
    else:
        try:
            with Image.open(path) as img:
                check_pixels(path, *img.size, "height map")
                array = np.asarray(img)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(f"{path}: cannot read height PNG ({type(exc).__name__}: {exc})") from exc
        array = array.astype(np.float32) * np.float32(height_scale)
    array = np.squeeze(np.asarray(array))
    if array.ndim != 2:
        raise DataError(f"{path}: a height map has one band, got shape {array.shape}")
    heights = array.astype(np.float32)
    for missing in (file_nodata, nodata):
        if missing is not None:
            heights[array == missing] = np.nan
    heights[~np.isfinite(heights) | (heights < 0)] = np.nan
    return heights


class CanopyDataset(Dataset):
    """(image tile, height map) pairs; see the module docstring for the sample layout."""

    def __init__(self, split: str, samples: Sequence[tuple[str, str]], fingerprint: str, max_height: float = 96.0,
                 height_scale: float = 1.0, nodata: float | None = None, image_max: float | None = None,
                 transform: Callable[[dict], dict] | None = None) -> None:
        self.name, self.split, self.samples = "canopy_folder", split, list(samples)
        self.fingerprint, self.transform = fingerprint, transform
        self.min_depth, self.max_depth = 0.0, float(max_height)  # the range a depth head's bins cover
        self.height_scale, self.nodata, self.image_max = float(height_scale), nodata, image_max
        self._names = [Path(image).stem for image, _ in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def check_ground_truth(self) -> None:
        """DataError unless some height map of the split has a valid height (finite, not nodata, in
        ``[0, max_height]``): a split without one would train on NaN losses - a data problem, not the learning
        rate's. Stops at the first valid map."""
        for _, height_path in self.samples:
            heights = load_heights(height_path, self.height_scale, self.nodata)
            if (np.isfinite(heights) & (heights <= self.max_depth)).any():
                return
        raise DataError(f"canopy {self.split}: none of the {len(self)} height maps has a valid height in [0, "
                        f"{self.max_depth:g}] m (height_scale {self.height_scale:g}, nodata {self.nodata}); check the "
                        f"height files, dataset.height_scale, dataset.nodata and dataset.max_height")

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_path, height_path = self.samples[index]
        image = load_canopy_image(image_path, self.image_max)
        heights = load_heights(height_path, self.height_scale, self.nodata)
        if heights.shape != tuple(image.shape[-2:]):
            raise DataError(f"{height_path}: heights are {heights.shape[1]}x{heights.shape[0]} but the image "
                            f"{image_path} is {image.shape[2]}x{image.shape[1]}; height maps need their image's size")
        sample = {"image": image, "height": torch.from_numpy(heights), "name": self._names[index]}
        return self.transform(sample) if self.transform is not None else sample

    def describe(self) -> dict[str, Any]:
        """Split, size and how heights are read (for the record)."""
        return {"split": self.split, "size": len(self), "max_height": self.max_depth,
                "height_scale": self.height_scale, "nodata": self.nodata}


class CanopyTransform(JointTransform):
    """Normalise the image; in training also flip (h / v) and randomly crop image and heights together."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], train: bool = False,
                 crop_size: int | None = None) -> None:
        self.train, self.crop_size = train, crop_size
        steps: list[Any] = [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)] if train else []
        if train and crop_size:
            steps.append(RandomCrop((int(crop_size), int(crop_size))))
        super().__init__([*steps, normalize(mean, std)], keys=("image", "height"))


def _pairs(images_dir: Path, heights_dir: Path) -> list[tuple[str, str]]:
    """Images and their height maps, matched by stem (any supported suffix)."""
    images = sorted(p for p in images_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)}); put the split's tiles here")
    heights = {p.stem: p for p in sorted(heights_dir.iterdir())
               if p.is_file() and p.suffix.lower() in HEIGHT_SUFFIXES}
    missing = [p.name for p in images if p.stem not in heights]
    if missing:
        raise DataError(f"{heights_dir}: {len(missing)} of {len(images)} tiles have no height map (<stem>"
                        f"{{{','.join(HEIGHT_SUFFIXES)}}}; first: {', '.join(missing[:3])})")
    return [(str(p), str(heights[p.stem])) for p in images]


def build_canopy_folder(cfg: dict[str, Any], data_root: str | None) -> dict[str, CanopyDataset]:
    """The ``train`` / ``val`` splits of a canopy-height folder (see the module docstring)."""
    cfg = reader_options(CanopyFolderOptions, cfg)
    root = root_folder(cfg, data_root, "canopy_folder", EXPECTED)
    scale, max_height = float(cfg["height_scale"]), float(cfg["max_height"])
    if scale <= 0 or max_height <= 0:
        raise ConfigError(f"dataset.height_scale={scale} / max_height={max_height}: both must be > 0")
    nodata = cfg["nodata"]
    splits = {}
    for split in ("train", "val"):
        split_dir = root / cfg[f"{split}_split"]
        images_dir = require_dir(split_dir / "images", f"{split_dir}/images ({EXPECTED})")
        heights_dir = require_dir(split_dir / "heights", f"{split_dir}/heights ({EXPECTED})")
        pairs = first_samples(_pairs(images_dir, heights_dir), cfg, split)
        fp = fingerprint_of({"files": file_listing(pairs, root), "height_scale": scale, "nodata": nodata})
        splits[split] = CanopyDataset(split, pairs, fp, max_height=max_height, height_scale=scale,
                                      nodata=None if nodata is None else float(nodata),
                                      image_max=cfg["image_max"])
    return splits
