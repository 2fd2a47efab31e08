"""A procedural canopy-height dataset in the ``canopy_folder`` layout (GeoTIFF tiles, GeoTIFF / NPY heights).

Tiles show brown ground with round green crowns whose brightness grows with their height, so a head can learn
heights from colour; height maps are 0 m on the ground and the crown's height inside it, with a rectangle of
``GDAL_NODATA`` (-9999) in every height GeoTIFF. Every third tile stores its heights as ``.npy`` instead.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dinobench.synthetic.dense import _rng, _size_hw

NODATA = -9999.0
GDAL_NODATA_TAG = 42113


def synthetic_canopy_sample(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(image [H, W, 3] uint8, heights [H, W] float32 metres)`` of one tile."""
    image = np.empty((h, w, 3), dtype=np.float32)
    image[:] = (120, 95, 70)
    image += rng.normal(0, 6, size=(h, w, 3))
    heights = np.zeros((h, w), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(2, 7))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        radius, tree = rng.uniform(min(h, w) / 10, min(h, w) / 4), rng.uniform(3.0, 40.0)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        heights[inside] = np.maximum(heights[inside], tree)
    crown = heights > 0
    green = 60 + 4.5 * heights[crown]
    image[crown] = np.stack([0.3 * green, green, 0.25 * green], axis=1)
    return np.clip(image, 0, 255).astype(np.uint8), heights


def write_synthetic_canopy(root: str | Path, n_train: int = 8, n_val: int = 4, size: int | tuple[int, int] = 64,
                           seed: int = 0) -> Path:
    """Write ``root/{train,val}/{images,heights}/`` (see the module docstring); return root."""
    import tifffile

    h, w = _size_hw(size)
    root = Path(root)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "heights").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, heights = synthetic_canopy_sample(h, w, _rng(seed, split, i, 31))
            planar = i % 2 == 1  # both band orders GeoTIFFs use
            tifffile.imwrite(root / split / "images" / f"{i:05d}.tif",
                             np.moveaxis(image, -1, 0) if planar else image,
                             photometric="rgb", planarconfig="separate" if planar else "contig")
            if i % 3 == 2:
                np.save(root / split / "heights" / f"{i:05d}.npy", heights)
            else:
                stored = heights.copy()
                stored[: h // 8, : w // 8] = NODATA
                tifffile.imwrite(root / split / "heights" / f"{i:05d}.tif", stored,
                                 extratags=[(GDAL_NODATA_TAG, "s", 0, f"{NODATA:g}", True)])
    return root
