"""Procedural tiny dense datasets written in the exact on-disk layouts the dense builders read.

* segmentation: textured shapes (each class its own colour + pattern) with exact class masks,
  in the ADE20K layout (png ids 1..6, 0 = "other" -> ignored by reduce-zero-label) or the
  generic ``seg_folder`` layout (ids 0..5, 255 = ignore);
* depth: a pinhole camera looking at a floor plane, a slanted back wall and boxes standing on the
  floor; depth is exact (metres -> uint16 millimetre PNG), texture scale and brightness fall off
  with depth so a linear head can learn it; in the NYU/BTS layout with split files or the generic
  ``depth_folder`` layout;
* retrieval (revisited Oxford/Paris, query/database folders) and foreground masks
  (:mod:`dinobench.synthetic.retrieval`; for the revisited kinds ``--n-train`` is the database size
  and ``--n-val`` the number of queries);
* action videos in the UCF-101 / Kinetics-400 / SSv2 layouts (:mod:`dinobench.synthetic.video`, PyAV).

Every sample is drawn from its own seeded generator (``seed``, split, index): the same call writes
byte-identical files. Command line::

    python -m dinobench.synthetic KIND OUT_DIR  (KIND: the registered writers) \\
        [--n-train N] [--n-val N] [--size S|HxW] [--seed S]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

#: synthetic segmentation classes (png ids 1..6 in the ADE layout, 0..5 in the seg_folder layout)
SYNTHETIC_SEG_CLASSES = ("stripes_h", "stripes_v", "checker", "dots", "diagonal", "blobs")
#: focal length of NYU-Depth v2 at 640 px width (the value BTS split files carry)
NYU_FOCAL_640 = 518.8579
_SPLIT_IDS = {"train": 0, "val": 1}


def _rng(seed: int, split: str, index: int, kind: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, kind, _SPLIT_IDS[split], index]))


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = (int(s) for s in size)
    return h, w


# ----------------------------------------------------------------------------- segmentation
def _texture(cls: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """float RGB [h, w, 3] in [0, 1]: the class's pattern with a random phase and mild noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    py, px = rng.integers(0, 8, size=2)
    yy, xx = yy + py, xx + px

    def mix(a: Sequence[float], b: Sequence[float], t: np.ndarray) -> np.ndarray:
        return np.asarray(a)[None, None] * (1 - t[..., None]) + np.asarray(b)[None, None] * t[..., None]

    if cls == 1:  # horizontal red stripes
        out = mix((0.85, 0.15, 0.1), (0.35, 0.05, 0.05), (np.floor(yy / 3) % 2))
    elif cls == 2:  # vertical green stripes
        out = mix((0.1, 0.8, 0.2), (0.0, 0.3, 0.1), (np.floor(xx / 3) % 2))
    elif cls == 3:  # blue / white checkerboard
        out = mix((0.1, 0.2, 0.9), (0.9, 0.9, 1.0), ((np.floor(yy / 4) + np.floor(xx / 4)) % 2))
    elif cls == 4:  # yellow dots on brown
        dots = (((yy % 6) - 2.5) ** 2 + ((xx % 6) - 2.5) ** 2) < 4.0
        out = mix((0.45, 0.25, 0.1), (1.0, 0.9, 0.1), dots.astype(np.float64))
    elif cls == 5:  # magenta diagonal stripes
        out = mix((0.9, 0.1, 0.8), (0.3, 0.0, 0.3), (np.floor((yy + xx) / 3) % 2))
    elif cls == 6:  # smooth cyan blobs
        t = 0.5 + 0.25 * np.sin(yy / 2.5 + rng.uniform(0, 6)) + 0.25 * np.cos(xx / 3.5 + rng.uniform(0, 6))
        out = mix((0.0, 0.55, 0.6), (0.6, 1.0, 1.0), t)
    else:  # "other": uniform colour noise
        out = rng.uniform(0, 1, size=(h, w, 3))
    out = out * rng.uniform(0.85, 1.15) + rng.normal(0, 0.03, size=(h, w, 3))
    return np.clip(out, 0, 1)


def _shape_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random rectangle, ellipse or triangle covering roughly 6-35% of the image."""
    yy, xx = np.mgrid[0:h, 0:w]
    sh, sw = rng.uniform(0.25, 0.6) * h, rng.uniform(0.25, 0.6) * w
    cy, cx = rng.uniform(sh / 2, h - sh / 2), rng.uniform(sw / 2, w - sw / 2)
    kind = rng.integers(3)
    if kind == 0:
        return (np.abs(yy - cy) <= sh / 2) & (np.abs(xx - cx) <= sw / 2)
    if kind == 1:
        return ((yy - cy) / (sh / 2)) ** 2 + ((xx - cx) / (sw / 2)) ** 2 <= 1.0
    top = cy - sh / 2  # isosceles triangle pointing up
    frac = (yy - top) / sh
    return (frac >= 0) & (frac <= 1) & (np.abs(xx - cx) <= frac * sw / 2)


def synthetic_seg_sample(h: int, w: int, rng: np.random.Generator, n_classes: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """One (uint8 RGB [h, w, 3], uint8 label [h, w]) scene: ids 1..n_classes, 0 = other pixels."""
    label = np.full((h, w), rng.integers(1, n_classes + 1), dtype=np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        shape = _shape_mask(h, w, rng)
        label[shape] = rng.integers(1, n_classes + 1)
        padded = np.pad(shape, 1)
        inner = padded[2:, 1:-1] & padded[:-2, 1:-1] & padded[1:-1, 2:] & padded[1:-1, :-2]
        ring = shape & ~inner
        if rng.uniform() < 0.5:  # some outlines are "other" (0)
            label[ring] = 0
    if rng.uniform() < 0.5:  # a small blob of clutter
        y0, x0 = rng.integers(0, h - h // 6), rng.integers(0, w - w // 6)
        label[y0:y0 + h // 8 + 1, x0:x0 + w // 8 + 1] = 0
    image = np.zeros((h, w, 3))
    for cls in np.unique(label):
        region = label == cls
        image[region] = _texture(int(cls), h, w, rng)[region]
    return (image * 255).round().astype(np.uint8), label


def write_synthetic_ade20k(root: str | Path, n_train: int = 16, n_val: int = 8, size: int = 64, seed: int = 0) -> Path:
    """Write ``root/ADEChallengeData2016`` (images/*.jpg, annotations/*.png with ids 0..6); return it."""
    base = Path(root) / "ADEChallengeData2016"
    h, w = _size_hw(size)
    for split, folder, n in (("train", "training", n_train), ("val", "validation", n_val)):
        (base / "images" / folder).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, label = synthetic_seg_sample(h, w, _rng(seed, split, i, 1))
            stem = f"ADE_{'train' if split == 'train' else 'val'}_{i + 1:08d}"
            Image.fromarray(image).save(base / "images" / folder / f"{stem}.jpg", quality=95)
            Image.fromarray(label, mode="L").save(base / "annotations" / folder / f"{stem}.png")
    return base


def write_synthetic_seg_folder(root: str | Path, n_train: int = 16, n_val: int = 8, size: int = 64,
                               seed: int = 0) -> Path:
    """Write ``root/{train,val}/{images,masks}`` (ids 0..5, 255 = ignore) + ``classes.txt``; return root."""
    root = Path(root)
    h, w = _size_hw(size)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, label = synthetic_seg_sample(h, w, _rng(seed, split, i, 2))
            label = np.where(label == 0, 255, label.astype(np.int64) - 1).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i:05d}.png")
            Image.fromarray(label, mode="L").save(root / split / "masks" / f"{i:05d}.png")
    (root / "classes.txt").write_text("\n".join(SYNTHETIC_SEG_CLASSES) + "\n")
    return root


# ----------------------------------------------------------------------------- depth
def synthetic_depth_sample(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One (uint8 RGB [h, w, 3], float64 depth [h, w] in metres, 0 = invalid) pinhole scene."""
    focal = NYU_FOCAL_640 * w / 640.0
    cam_height = rng.uniform(1.0, 1.6)
    horizon = rng.uniform(0.3, 0.5) * h
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    wall = rng.uniform(5.0, 8.5) + rng.uniform(-1.5, 1.5) * (xx - w / 2) / w  # slanted back wall
    below = yy - horizon
    floor = np.where(below > 0, focal * cam_height / np.maximum(below, 1e-6), np.inf)
    is_floor = floor < wall
    depth = np.where(is_floor, floor, wall)
    # world coordinates of each pixel (for perspective-correct textures)
    world_x = (xx - w / 2) * depth / focal
    world_y = (horizon - yy) * depth / focal + cam_height
    checker = (np.floor(world_x / 0.5) + np.floor(depth / 0.5)) % 2
    stripes = np.floor(world_x / 0.4) % 2
    image = np.where(is_floor[..., None], 0.45 + 0.35 * checker[..., None] * np.array([1.0, 0.8, 0.6]),
                     0.5 + 0.3 * stripes[..., None] * np.array([0.6, 0.7, 1.0]))
    for _ in range(int(rng.integers(1, 4))):  # boxes standing on the floor, painted far to near
        z = rng.uniform(1.5, 4.5)
        bw, bh = rng.uniform(0.4, 1.2), rng.uniform(0.4, 1.2)
        x_world = rng.uniform(-1.5, 1.5)
        x0, x1 = w / 2 + (x_world - bw / 2) * focal / z, w / 2 + (x_world + bw / 2) * focal / z
        y1 = horizon + focal * cam_height / z
        y0 = y1 - focal * bh / z
        box = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1) & (depth > z)
        depth = np.where(box, z, depth)
        colour = rng.uniform(0.3, 1.0, size=3)
        dots = ((((world_x / 0.15) % 1) - 0.5) ** 2 + (((world_y / 0.15) % 1) - 0.5) ** 2) < 0.1
        image = np.where(box[..., None], colour * (0.75 + 0.25 * dots[..., None]), image)
    image = image * np.exp(-depth / 6.0)[..., None] * 1.6  # brightness falls off with depth
    image = np.clip(image + rng.normal(0, 0.02, size=image.shape), 0, 1)
    if rng.uniform() < 0.5:  # a small hole without a depth reading, like the sensor's
        y0, x0 = rng.integers(0, h - h // 8), rng.integers(0, w - w // 8)
        depth[y0:y0 + h // 10 + 1, x0:x0 + w // 10 + 1] = 0.0
    return (image * 255).round().astype(np.uint8), depth


def _save_depth_png(depth_m: np.ndarray, path: Path) -> None:
    millimetres = np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
    Image.fromarray(millimetres).save(path)


def write_synthetic_nyu(root: str | Path, n_train: int = 16, n_val: int = 8, size: tuple[int, int] | int = (48, 64),
                        seed: int = 0) -> Path:
    """Write an NYU-Depth v2 tree in the BTS layout (``sync/``, ``official_splits/test/`` and the two
    ``nyudepthv2_*_files_with_gt.txt`` split files); return ``root``."""
    root = Path(root)
    h, w = _size_hw(size)
    focal = NYU_FOCAL_640 * w / 640.0
    scenes = ("kitchen_0001a", "bedroom_0002b", "office_0003")
    for split, n in (("train", n_train), ("val", n_val)):
        lines = []
        for i in range(n):
            image, depth = synthetic_depth_sample(h, w, _rng(seed, split, i, 3))
            if split == "train":
                rel = f"{scenes[i % len(scenes)]}"
                folder = root / "sync" / rel
                rgb, dep = f"/{rel}/rgb_{i:05d}.jpg", f"/{rel}/sync_depth_{i:05d}.png"
            else:
                rel = ("bathroom", "bedroom", "kitchen")[i % 3]
                folder = root / "official_splits" / "test" / rel
                rgb, dep = f"{rel}/rgb_{i:05d}.jpg", f"{rel}/sync_depth_{i:05d}.png"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / Path(rgb).name, quality=95)
            _save_depth_png(depth, folder / Path(dep).name)
            lines.append(f"{rgb} {dep} {focal:.4f}")
        name = "nyudepthv2_train_files_with_gt.txt" if split == "train" else "nyudepthv2_test_files_with_gt.txt"
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def write_synthetic_depth_folder(root: str | Path, n_train: int = 16, n_val: int = 8,
                                 size: tuple[int, int] | int = (48, 64), seed: int = 0) -> Path:
    """Write ``root/{train,val}/images/*.png`` + ``root/{train,val}/depth/*.png`` (uint16 mm); return root."""
    root = Path(root)
    h, w = _size_hw(size)
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "depth").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, depth = synthetic_depth_sample(h, w, _rng(seed, split, i, 4))
            Image.fromarray(image).save(root / split / "images" / f"{i:05d}.png")
            _save_depth_png(depth, root / split / "depth" / f"{i:05d}.png")
    return root
